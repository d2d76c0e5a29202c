#!/usr/bin/env bash
# README command 1: prepares a fresh Debian 12 machine (packages from
# Debian only), builds pinfold and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
    echo "setup-and-demo.sh: run as root (installs packages, loads BPF)" >&2
    exit 1
fi
scripts/install-deps.sh
scripts/build.sh
scripts/demo.sh
