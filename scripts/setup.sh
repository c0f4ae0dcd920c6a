#!/usr/bin/env bash
# Installs the Debian packages one purpose needs, and nothing else:
#
#   scripts/setup.sh [PURPOSE]          install what PURPOSE needs (default: build)
#   scripts/setup.sh --print PURPOSE    print its packages, one a line; install nothing
#
# Purposes:
#   build   compile tollgate and its man pages (make, make release, make install)
#   demo    compile and run the demo, whose printed commands use openssl and curl
#   test    build + unit, end-to-end, asan and valgrind tests, lint, the .deb
#           (make test, make asan, make valgrind, make deb)
#   fuzz    build + clang's libFuzzer (make fuzz)
#   bench   build + the peers it is measured against and its tools (make bench)
#
# Idempotent, non-interactive, and silent when nothing is missing.
#
# Services: it never stops, disables or reconfigures a service. Debian's
# haproxy, nginx, prometheus and etcd-server packages start their daemon
# when installed.
# To prevent that, while it installs, the script puts a policy-rc.d that
# refuses every start (exit 101; invoke-rc.d and deb-systemd-invoke ask it)
# at $POLICY_RC_D, but only if no such file exists, and removes it when it
# exits, whatever happens (trap). Preventing the start is better than
# stopping afterwards: nothing ever holds port 80 even for a moment. When a
# policy-rc.d was already there (the machine's own, which may allow starts),
# the script leaves it alone and afterwards stops only the services of
# packages that it installed in this very run and says so on stdout; a
# package that was installed before is never touched. Debian still enables a
# newly installed daemon for the next boot; the script says so and leaves
# that choice to the administrator.
set -euo pipefail

POLICY_RC_D=${POLICY_RC_D:-/usr/sbin/policy-rc.d}

BUILD=(build-essential cmake pkg-config libssl-dev libev-dev libfyaml-dev node-llhttp
    libjansson-dev libcurl4-openssl-dev libnghttp2-dev)
# pandoc turns docs/CONFIG.md and man/tollgate.8.md into the man pages.
DOCS=(pandoc)
DEMO=(openssl curl)
# Test tools: cmocka (unit), pytest and real clients (e2e), promtool from
# prometheus (test_admin checks /metrics with it), clang-format (lint),
# clang and its runtimes (asan with clang), valgrind, man-db and logrotate
# (the install test renders the man pages and rotates with the installed
# file), chromium (headless, the admin status page), etcd-server and
# etcd-client (the fleet tests run a real etcd on loopback, from their own
# temporary data directories, never the system's), time (GNU time measures
# the peak memory of a command for the fleet tests), and what building and
# checking the .deb takes.
TEST=(libcmocka-dev clang-format clang libclang-rt-dev valgrind
    python3 python3-pytest python3-cryptography python3-h2 openssl curl gnutls-bin nghttp2-client
    prometheus man-db logrotate chromium etcd-server etcd-client time
    debhelper lintian dpkg-dev fakeroot)
FUZZ=(clang libclang-rt-dev)
# bench/run.sh runs haproxy and nginx from its own temporary configs.
BENCH=(haproxy nginx libnginx-mod-stream wrk nghttp2-client linux-perf openssl python3)

# Packages whose installation starts a daemon, and the unit each starts.
declare -A DAEMON=([haproxy]=haproxy [nginx]=nginx [prometheus]=prometheus [etcd-server]=etcd)

packages_for()
{
    case "$1" in
    build) printf '%s\n' "${BUILD[@]}" "${DOCS[@]}" ;;
    demo) printf '%s\n' "${BUILD[@]}" "${DEMO[@]}" ;;
    test) printf '%s\n' "${BUILD[@]}" "${DOCS[@]}" "${TEST[@]}" ;;
    fuzz) printf '%s\n' "${BUILD[@]}" "${FUZZ[@]}" ;;
    bench) printf '%s\n' "${BUILD[@]}" "${DOCS[@]}" "${BENCH[@]}" ;;
    *) return 1 ;;
    esac | awk '!seen[$0]++'
}

usage()
{
    echo "usage: scripts/setup.sh [--print] [build|demo|test|fuzz|bench]" >&2
    exit 2
}

is_installed()
{
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

print_only=false
if [ "${1:-}" = "--print" ]; then
    print_only=true
    shift
fi
[ $# -le 1 ] || usage
purpose=${1:-build}
pkgs=$(packages_for "$purpose") || usage
if $print_only; then
    echo "$pkgs"
    exit 0
fi

missing=()
for p in $pkgs; do
    is_installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "setup: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    }
    SUDO=(sudo)
fi

own_policy=false
remove_policy()
{
    if $own_policy; then
        "${SUDO[@]}" rm -f "$POLICY_RC_D"
        echo "setup: removed the temporary $POLICY_RC_D"
    fi
}
trap remove_policy EXIT
if [ ! -e "$POLICY_RC_D" ]; then
    printf '#!/bin/sh\n# scripts/setup.sh of tollgate, removed when it ends\nexit 101\n' |
        "${SUDO[@]}" tee "$POLICY_RC_D" >/dev/null
    "${SUDO[@]}" chmod 0755 "$POLICY_RC_D"
    own_policy=true
    echo "setup: $POLICY_RC_D (exit 101) keeps new packages from starting services while installing"
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt=("${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 -qq)
"${apt[@]}" update
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null

for p in "${missing[@]}"; do
    unit=${DAEMON[$p]:-}
    [ -n "$unit" ] || continue
    if ! $own_policy && command -v systemctl >/dev/null 2>&1 &&
        systemctl is-active --quiet "$unit" 2>/dev/null; then
        # Installed by this run and started by its package despite the
        # machine's policy-rc.d: stop it, it was not running before.
        echo "setup: stopping $unit, started by the $p package this run installed"
        "${SUDO[@]}" systemctl stop "$unit"
    fi
    echo "setup: $p installed; $unit is not running; Debian enables it at boot" \
        "(turn that off with systemctl if unwanted)"
done
