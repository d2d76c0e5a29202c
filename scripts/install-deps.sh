#!/usr/bin/env bash
# Installs every build, test and demo dependency of pinfold from Debian 12
# packages. Idempotent: apt-get skips what is already there.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh: must run as root (it calls apt-get)" >&2
    exit 1
fi

build_packages=(
    build-essential cmake ninja-build pkg-config
    clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev linux-libc-dev
    libspdlog-dev libfmt-dev libboost-program-options-dev libyaml-cpp-dev
    nlohmann-json3-dev libssl-dev libseccomp-dev libcap-dev doctest-dev
    python3   # cmake configures the python test suites
)
packages=(
    "${build_packages[@]}"
    # run and test: real clients and servers on loopback
    curl git python3 nodejs gh openssl iproute2 procps util-linux libcap2-bin
    psmisc
    # vmtests/ (kernels are fetched with apt-get download) and containers
    qemu-system-x86 busybox-static kmod xz-utils zstd
    podman runc slirp4netns uidmap debootstrap
    # bench/ (not the test command): load tools, peers, profilers
    wrk hyperfine nginx-light squid mitmproxy bubblewrap libbenchmark-dev
    linux-perf valgrind socat ripgrep   # srt (npm) needs socat and rg on Linux
)

# --build: only what compiling needs (the Containerfile's build stage).
if [[ ${1:-} == --build ]]; then packages=("${build_packages[@]}"); fi

export DEBIAN_FRONTEND=noninteractive
# Packages such as nginx and squid start their system services when
# installed; pinfold's tests and benchmarks start their own on loopback
# ports and stop them by PID, so nothing may start here. policy-rc.d
# answering 101 is Debian's way to say so; an existing one is kept.
policy_rc=/usr/sbin/policy-rc.d
if [[ ! -e $policy_rc ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy_rc"
    chmod 755 "$policy_rc"
    trap 'rm -f "$policy_rc"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "install-deps.sh: ${#packages[@]} packages present"
