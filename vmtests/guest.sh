#!/bin/bash
# PID 1 inside the vmtests guest, run from the read-only host root: prepares
# what the suites expect of a fresh machine (pure cgroup v2, bpffs, tmpfs,
# loopback), runs the test list vmtests/run.sh wrote, records the status in
# the results share and powers off.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp/home LANG=C.UTF-8
results=/run/vm/results
finish() { echo "$1" > "$results/status"; sync; echo o > /proc/sysrq-trigger; sleep 30; }
trap 'finish 1' EXIT

set -a; . "$results/env"; set +a
# A source or build tree under /tmp or /var/tmp stays visible (read-only)
# under the guest's fresh tmpfs.
keep=()
for dir in "$PINFOLD_SOURCE_DIR" "$PINFOLD_BUILD_DIR"; do
    case $dir in /tmp/*|/var/tmp/*) ;; *) continue ;; esac
    mkdir -p "/run/vm/keep/${#keep[@]}"
    mount --bind "$dir" "/run/vm/keep/${#keep[@]}"
    keep+=("$dir")
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
for i in "${!keep[@]}"; do
    mkdir -p "${keep[$i]}"
    mount --move "/run/vm/keep/$i" "${keep[$i]}"
done
mkdir -p /dev/pts /dev/shm "$HOME"
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -t bpf -o mode=0700 bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ip link set lo up
# Protocol modules (sctp, ...) load on demand from the kernel's own package.
printf '#!/bin/sh\nexec /sbin/modprobe -d /run/vm/kernel "$@"\n' > /run/vm/modprobe
chmod 0755 /run/vm/modprobe
echo /run/vm/modprobe > /proc/sys/kernel/modprobe
# Every controller available to the test cgroups, as on a systemd host.
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
done
[[ -e /sys/kernel/btf/vmlinux ]] || echo "guest: no /sys/kernel/btf/vmlinux"
echo "guest: $(uname -r), ${PINFOLD_KERNEL_LACKS:+lacks $PINFOLD_KERNEL_LACKS, }$(nproc) cpus, up $(cut -d' ' -f1 /proc/uptime)s"

passed=0 failed=()
run_test() {
    local name=$1 limit=$2; shift 2
    local env=()
    while [[ $1 != -- ]]; do env+=("$1"); shift; done
    shift
    local t0=$SECONDS log=$results/$name.log
    cd "$PINFOLD_BUILD_DIR/tests" 2>/dev/null || cd /tmp
    if env "${env[@]}" timeout --kill-after=10 "$limit" "$@" </dev/null >"$log" 2>&1; then
        passed=$((passed + 1)); echo "guest: PASS $name ($((SECONDS - t0)) s)"
    else
        failed+=("$name"); echo "guest: FAIL $name ($((SECONDS - t0)) s)"; tail -n 60 "$log"
    fi
    grep -E '^(Ran |OK|FAILED|.*skipped)' "$log" | sed 's/^/    /' | head -n 40
}
. "$results/tests.sh"
echo "guest: ${passed} passed, ${#failed[@]} failed${failed:+ (${failed[*]})}"
trap - EXIT
finish $(( ${#failed[@]} ? 1 : 0 ))
