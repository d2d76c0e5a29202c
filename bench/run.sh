#!/usr/bin/env bash
# bench/run.sh: pinfold next to direct, squid, srt, bubblewrap, unshare and
# mitmproxy, on loopback; one table on stdout, copies in bench/results/.
# Run as root after the README's setup command (scripts/setup-and-demo.sh).
#   bench/run.sh [--quick] [--runs N] [--seconds S] [--only start,newconn,...]
#   bench/run.sh --profile      (callgrind, perf cpu-clock, strace of the proxy)
# Builds into $PINFOLD_BUILD_DIR (default build-bench) with -DPINFOLD_BENCH=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
    echo "bench/run.sh: run as root (pinfold run loads BPF programs)" >&2
    exit 1
fi
build_dir=${PINFOLD_BUILD_DIR:-build-bench}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPINFOLD_BENCH=ON >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target pinfold pinfold-proxy policy_bench conn_latency relay_probe >/dev/null
# srt comes from npm, pinned by bench/srt/package-lock.json; without it the
# table says why instead of a figure.
if [[ ! -x bench/srt/node_modules/.bin/srt ]]; then
    (cd bench/srt && npm ci --no-audit --no-fund >/dev/null 2>&1) ||
        echo "bench/run.sh: npm ci in bench/srt failed; srt columns will say so" >&2
fi
if [[ ${1:-} == --profile ]]; then
    shift
    exec python3 bench/profile.py --bin-dir "$build_dir/bin" "$@"
fi
exec python3 bench/bench.py --bin-dir "$build_dir/bin" "$@"
