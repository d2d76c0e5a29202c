#!/usr/bin/env bash
# vmtests/run.sh [KERNEL]: boots a Debian kernel under qemu with the host's
# root shared read-only over virtio-9p and runs the bpf, integration and
# red-team suites of the host build inside it; exits with their status.
#
# KERNEL is a series (6.1, 6.12; default 6.12) or a package name
# (linux-image-6.1.0-56-amd64). The kernel package is fetched with
# `apt-get download` and unpacked into a cache without being installed.
# Everything is compiled on the host: the guest only runs binaries.
#
# Environment:
#   PINFOLD_BUILD_DIR   host build directory (default build)
#   PINFOLD_VM_CACHE    kernel and initramfs cache (default /var/cache/pinfold/vm)
#   PINFOLD_VM_LABELS   ctest label regex (default 'bpf|integration|redteam')
#   PINFOLD_VM_TESTS    ctest name regex to narrow the run (default: all)
#   PINFOLD_VM_CPUS, PINFOLD_VM_MEM  guest size (default 2, 2048 MiB)
#   PINFOLD_VM_TIMEOUT  seconds for the whole VM (default 2400)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
kernel_arg=${1:-6.12}
build_dir=${PINFOLD_BUILD_DIR:-build}
[[ $build_dir = /* ]] || build_dir=$src/$build_dir
cache=${PINFOLD_VM_CACHE:-/var/cache/pinfold/vm}
labels=${PINFOLD_VM_LABELS:-bpf|integration|redteam}
cpus=${PINFOLD_VM_CPUS:-2}
mem=${PINFOLD_VM_MEM:-2048}
vm_timeout=${PINFOLD_VM_TIMEOUT:-2400}

say() { echo "vmtests: $*" >&2; }
die() { say "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (the guest suites load BPF as root; qemu shares / read-only)"
for tool in qemu-system-x86_64 busybox depmod modprobe apt-get dpkg-deb ctest python3; do
    command -v "$tool" >/dev/null || die "missing $tool: run scripts/install-deps.sh"
done
[[ -x $build_dir/bin/pinfold ]] || die "no build in $build_dir: run scripts/build.sh first"

# Resolves a series to the newest Debian kernel package of it; falls back to
# the newest cached one when apt's lists do not know it (offline re-runs).
resolve_package() {
    local want=$1 pattern
    if [[ $want == linux-image-* ]]; then echo "$want"; return; fi
    [[ $want =~ ^[0-9]+\.[0-9]+$ ]] || die "KERNEL must be a series like 6.1 or a linux-image-* package, not '$want'"
    pattern="^linux-image-${want//./\\.}(\\.[0-9]+\\+deb[0-9]+|\\.0-[0-9]+)-amd64\$"
    local found
    found=$( { apt-cache pkgnames linux-image- 2>/dev/null || true; ls "$cache" 2>/dev/null || true; } \
             | grep -E "$pattern" | sort -uV | tail -n1 || true)
    [[ -n $found ]] || die "no Debian kernel package for series $want (apt-get update?)"
    echo "$found"
}

# Unpacks the kernel package and builds a busybox initramfs that loads the
# kernel's own virtio/9p modules, mounts the host root and hands over to
# vmtests/guest.sh. Idempotent; a finished tree is marked by `ready`.
prepare_kernel() {
    local pkg=$1 dir=$cache/$1
    [[ -e $dir/ready ]] && return
    say "preparing $pkg in $dir"
    rm -rf "$dir"
    mkdir -p "$dir/root" "$dir/initramfs/bin" "$dir/initramfs/modules"
    (cd "$dir" && apt-get download -q "$pkg" >/dev/null 2>&1) || \
        (cd "$dir" && apt-get download "$pkg") || die "apt-get download $pkg failed"
    dpkg-deb -x "$dir"/*.deb "$dir/root"
    rm -f "$dir"/*.deb
    local ver
    ver=$(ls "$dir/root/lib/modules")
    depmod -b "$dir/root" "$ver"
    cp "$dir/root/boot/vmlinuz-$ver" "$dir/vmlinuz"
    echo "$ver" > "$dir/version"
    # insmod order, first occurrence wins; modules built in need nothing.
    local line mod name order=()
    while read -r line; do
        [[ $line == insmod* ]] || continue
        mod=${line#insmod }; mod=${mod%% *}
        name=$(basename "$mod"); name=${name%.xz}; name=${name%.zst}
        [[ " ${order[*]} " == *" $name "* ]] && continue
        case $mod in
            *.xz) xz -dc "$mod" > "$dir/initramfs/modules/$name" ;;
            *.zst) zstd -qdc "$mod" > "$dir/initramfs/modules/$name" ;;
            *) cp "$mod" "$dir/initramfs/modules/$name" ;;
        esac
        order+=("$name")
    done < <(modprobe -d "$dir/root" -S "$ver" --show-depends -a 9p 9pnet_virtio virtio_pci)
    printf '%s\n' "${order[@]}" > "$dir/initramfs/modules/order"
    cp /bin/busybox "$dir/initramfs/bin/busybox"
    cp "$here/initramfs-init" "$dir/initramfs/init"
    chmod 0755 "$dir/initramfs/init"
    (cd "$dir/initramfs" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$dir/initramfs.gz")
    touch "$dir/ready"
}

# What the kernel cannot do, for the suites to skip with a reason instead of
# failing (see tests/lib/pftest.py, kernel_lacks). Versions: docs/kernel-support.md.
features_lacking() {
    local ver=$1 major minor lacks=()
    major=${ver%%.*}; minor=${ver#*.}; minor=${minor%%[.-]*}
    local v=$((major * 1000 + minor))
    ((v < 6007)) && lacks+=(connect_unix landlock_net)
    ((v < 6009)) && lacks+=(bpf_token)
    ((v < 6012)) && lacks+=(landlock_scope narrow_spill_fix)
    local IFS=,
    echo "${lacks[*]}"
}

pkg=$(resolve_package "$kernel_arg")
mkdir -p "$cache"
# One preparation at a time (two ctest runs may share the cache).
exec 9>"$cache/.lock"
flock 9
prepare_kernel "$pkg"
flock -u 9
kdir=$cache/$pkg
kver=$(cat "$kdir/version")
lacks=$(features_lacking "$kver")

# The test list comes from ctest itself, so new suites run in the VM without
# touching this script. The guest cannot run ctest: the build dir is read-only.
work=$(mktemp -d /tmp/pinfold-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$build_dir" && ctest --show-only=json-v1 -L "$labels" ${PINFOLD_VM_TESTS:+-R "$PINFOLD_VM_TESTS"}) > "$work/tests.json"
python3 "$here/test_list.py" "$work/tests.json" > "$work/tests.sh"
count=$(grep -c '^run_test ' "$work/tests.sh" || true)
[[ $count -gt 0 ]] || die "ctest lists no test for labels '$labels'"
# The guest is the suites' own machine: leftover checks there are global.
cat > "$work/env" <<ENV
PINFOLD_KERNEL_LACKS=$lacks
PINFOLD_TEST_EXCLUSIVE=1
PINFOLD_SOURCE_DIR=$src
PINFOLD_BUILD_DIR=$build_dir
ENV

say "kernel $kver ($pkg), $count tests, lacks: ${lacks:-nothing}"
start=$(date +%s.%N)
# TCG: this machine's /dev/kvm is a nested PVM host that stock kernels hang on.
timeout --kill-after=10 "$vm_timeout" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem" \
    -nographic -no-reboot -nic none \
    -kernel "$kdir/vmlinuz" -initrd "$kdir/initramfs.gz" \
    -append "console=ttyS0 quiet loglevel=4 panic=-1 pinfold_guest=$here/guest.sh" \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=kernel,path="$kdir/root",security_model=none,readonly=on \
    -device virtio-9p-pci,fsdev=kernel,mount_tag=kernel \
    -fsdev local,id=results,path="$work",security_model=none \
    -device virtio-9p-pci,fsdev=results,mount_tag=results \
    </dev/null || say "qemu exited with $?"
end=$(date +%s.%N)
elapsed=$(python3 -c "print(f'{$end - $start:.1f}')")

if [[ ! -e $work/status ]]; then
    say "FAIL: the guest did not finish (crash, panic or timeout after ${elapsed}s)"
    exit 1
fi
status=$(cat "$work/status")
say "kernel $kver: suites exited $status in ${elapsed}s (boot to shutdown)"
exit "$status"
