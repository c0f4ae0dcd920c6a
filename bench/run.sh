#!/usr/bin/env bash
# Side-by-side benchmark of tollgate, HAProxy and nginx on loopback.
#
#   bench/run.sh [all|SCENARIO...]
#   bench/run.sh profile [SCENARIO...]    perf record -g on one server's worker
#   bench/run.sh syscalls [SCENARIO...]   system calls per request (perf stat tracepoints)
#
# Environment: TOLLGATE_BIN (default build-release/tollgate), BENCH_SECONDS
# (10), BENCH_ROUNDS (3), BENCH_CONC (32), BENCH_HOLD (9900), BENCH_RATE
# (2000), BENCH_WARMUP (1), BENCH_SERVERS (tollgate,haproxy,nginx),
# BENCH_PORT_BASE (17000), BENCH_OUT (bench/results), BENCH_PROFILE_SERVER,
# BENCH_KEEP=1 (keep the work dir with configs, logs and PKI).
# Quick smoke run: BENCH_SECONDS=1 BENCH_ROUNDS=1 bash bench/run.sh hs_rsa_tcp
# Results: bench/results/latest.md, latest.csv (summary), rounds.csv (raw).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
export TOLLGATE_BIN="${TOLLGATE_BIN:-$root/build-release/tollgate}"
export BENCH_TOOLS="${BENCH_TOOLS:-$here/.build}"

for tool in haproxy nginx wrk h2load openssl taskset cc python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        pkg=""
        [ "$tool" != h2load ] || pkg=" (Debian package nghttp2-client)"
        echo "bench: $tool not found$pkg; run scripts/setup.sh bench" >&2
        exit 1
    fi
done
if [ ! -x "$TOLLGATE_BIN" ]; then
    echo "bench: $TOLLGATE_BIN not found; build it with 'make release' or set TOLLGATE_BIN" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "bench: needs two cores (server on core 0, client on core 1)" >&2
    exit 1
fi

# The load generator, backend and the plain relay of the bulk ceiling are
# small C programs; rebuild when changed.
mkdir -p "$BENCH_TOOLS"
for t in tgload tgback tgrelay; do
    if [ ! -x "$BENCH_TOOLS/$t" ] || [ "$here/$t.c" -nt "$BENCH_TOOLS/$t" ] ||
        [ "$here/addr.h" -nt "$BENCH_TOOLS/$t" ]; then
        cc -std=c17 -O2 -g -Wall -Wextra -o "$BENCH_TOOLS/$t" "$here/$t.c" -lssl -lcrypto
    fi
done

# 10,000 held connections need file descriptors on every side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec python3 "$here/bench.py" "$@"
