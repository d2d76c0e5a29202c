#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs every test
# suite (unit, integration, redteam) with ctest. Must run as root: the
# integration and red-team suites load BPF programs and create cgroups.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: run as root (the suites attach real cgroup BPF hooks)" >&2
    exit 1
fi

scripts/install-deps.sh
scripts/build.sh
build_dir=${PINFOLD_BUILD_DIR:-build}
cd "$build_dir"
# Unit tests first (fast, no privilege), then the root-only suites one by one.
# This run owns the machine: leftover checks are global, not per run.
export PINFOLD_TEST_EXCLUSIVE=1
ctest --output-on-failure --timeout 900 "$@"
