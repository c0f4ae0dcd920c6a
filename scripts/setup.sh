#!/usr/bin/env bash
# Installs every Debian package tollgate needs to build, test and benchmark.
# Idempotent and non-interactive: packages already present are skipped.
set -euo pipefail

PKGS=(
    build-essential cmake pkg-config clang-format clang libclang-rt-dev valgrind
    libssl-dev openssl libev-dev libfyaml-dev node-llhttp libjansson-dev libcmocka-dev
    python3 python3-pytest python3-cryptography curl gnutls-bin
    haproxy nginx libnginx-mod-stream wrk nghttp2-client linux-perf prometheus
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packaged daemons must not hold ports or run in the background here.
for svc in haproxy nginx; do
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
