#!/usr/bin/env bash
# One-time root setup so that an ordinary user can run `pinfold run`
# (README, "Without root"). Idempotent; --undo reverts it.
#
#   scripts/setup-unprivileged.sh [--binary PATH] USER     set up
#   scripts/setup-unprivileged.sh --enter PID USER          move PID (the user's shell) into the subtree
#   scripts/setup-unprivileged.sh [--binary PATH] --undo USER
#
# USER is a login name or a numeric uid (a uid without a passwd entry uses
# the same number as gid unless --gid says otherwise). What it does:
#   1. file capabilities on the pinfold binary: cap_bpf,cap_net_admin,cap_perfmon+ep
#      (the binary and its directory must belong to root: whoever can
#      replace it could give the capabilities to anything);
#   2. a cgroup2 subtree delegated to the user, as systemd delegates one:
#      <cgroup2>/pinfold-users/UID with the directory and its cgroup.procs,
#      cgroup.subtree_control and cgroup.threads owned by the user, and a
#      leaf UID/session for the user's shell. On a unified host the memory,
#      pids and cpu controllers are enabled down to it; on a hybrid host
#      (cgroup2 at /sys/fs/cgroup/unified with no controllers) the same
#      subtree is made in the v1 memory, pids and cpu hierarchies instead;
#   3. a bpffs of the user's own at /run/pinfold-bpf/UID (mode 0700; the
#      user cannot pass root's 0700 /sys/fs/bpf) for the link pins;
#   4. /run/user/UID (XDG_RUNTIME_DIR, 0700) if nothing made it already.
# The user's shell must then run inside the subtree (clone3 into a cgroup
# needs write access to the cgroup.procs of a cgroup containing both):
#   scripts/setup-unprivileged.sh --enter $PID_OF_THE_SHELL USER
# /run and the cgroup trees do not survive a reboot: run it again then.
set -euo pipefail

die() { echo "setup-unprivileged: $*" >&2; exit 1; }
say() { echo "setup-unprivileged: $*"; }

binary=""
gid_arg=""
mode=setup
enter_pid=""
while [ $# -gt 1 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --gid) gid_arg=$2; shift 2 ;;
    --undo) mode=undo; shift ;;
    --enter) mode=enter; enter_pid=$2; shift 2 ;;
    *) die "unknown option '$1' (usage: $0 [--binary PATH] [--gid GID] [--undo | --enter PID] USER)" ;;
  esac
done
[ $# -eq 1 ] || die "usage: $0 [--binary PATH] [--gid GID] [--undo | --enter PID] USER"
user=$1
[ "$(id -u)" -eq 0 ] || die "must run as root"

if [[ "$user" =~ ^[0-9]+$ ]]; then
  uid=$user
  gid=${gid_arg:-$( (getent passwd "$uid" || true) | cut -d: -f4)}
  gid=${gid:-$uid}
else
  uid=$(id -u "$user" 2>/dev/null) || die "no such user '$user'"
  gid=${gid_arg:-$(id -g "$user")}
fi
[ "$uid" -ne 0 ] || die "root needs no setup"

# Mount points from /proc/self/mountinfo: cgroup2, and the v1 hierarchy of a controller.
cgroup2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") print $5; break } }' /proc/self/mountinfo | head -n1)
[ -n "$cgroup2" ] || die "no cgroup2 hierarchy is mounted"
v1_mount() {
  awk -v c="$1" '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup") { n = split($(i+3), o, ","); for (j = 1; j <= n; j++) if (o[j] == c) print $5 } break } }' /proc/self/mountinfo | head -n1
}
controllers="memory pids cpu"
delegated=$cgroup2/pinfold-users/$uid
bpffs=/run/pinfold-bpf/$uid
run_user=/run/user/$uid
state=/run/pinfold-bpf/.setup-$uid   # what this script created, for --undo

delegate_dir() {   # chown a cgroup directory and the files that make it delegated
  local dir=$1
  chown "$uid:$gid" "$dir"
  for f in cgroup.procs cgroup.subtree_control cgroup.threads tasks; do
    [ -e "$dir/$f" ] && chown "$uid:$gid" "$dir/$f"
  done
  return 0
}

v2_has() { grep -qw "$1" "$cgroup2/cgroup.controllers"; }

move_out() {   # every process of a cgroup subtree back to the root cgroup of its hierarchy
  local tree=$1 top=$2
  [ -d "$tree" ] || return 0
  find "$tree" -depth -type d | while read -r d; do
    [ -f "$d/cgroup.procs" ] || continue
    while read -r p; do echo "$p" > "$top/cgroup.procs" 2>/dev/null || true; done < "$d/cgroup.procs"
  done
}

remove_tree() {   # kill what runs in a cgroup subtree, then rmdir it bottom-up
  local tree=$1
  [ -d "$tree" ] || return 0
  [ -e "$tree/cgroup.kill" ] && echo 1 > "$tree/cgroup.kill" 2>/dev/null || true
  for _ in $(seq 1 100); do
    find "$tree" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$tree" ] || return 0
    sleep 0.05
  done
  die "cannot remove $tree (processes still in it?)"
}

case $mode in
enter)
  [ -d /proc/"$enter_pid" ] || die "no process $enter_pid"
  [ -d "$delegated/session" ] || die "$delegated/session does not exist: run the setup first"
  echo "$enter_pid" > "$delegated/session/cgroup.procs"
  for c in $controllers; do
    v2_has "$c" && continue
    m=$(v1_mount "$c"); [ -n "$m" ] && [ -d "$m/pinfold-users/$uid" ] || continue
    echo "$enter_pid" > "$m/pinfold-users/$uid/cgroup.procs"
  done
  say "process $enter_pid is in $delegated/session"
  ;;

setup)
  # 1. File capabilities.
  if [ -n "$binary" ]; then
    [ -f "$binary" ] || die "--binary $binary: no such file"
    dir=$(dirname "$(readlink -f "$binary")")
    for p in "$(readlink -f "$binary")" "$dir"; do
      [ "$(stat -c %u "$p")" -eq 0 ] || die "$p must belong to root (its owner could replace the capability-carrying binary)"
      [ $(( 0$(stat -c %a "$p") & 022 )) -eq 0 ] || die "$p must not be writable by group or others"
    done
    setcap cap_bpf,cap_net_admin,cap_perfmon+ep "$binary"
    say "file capabilities on $binary: $(getcap "$binary" | cut -d' ' -f2-)"
  else
    say "no --binary given: file capabilities not set"
  fi

  # 2. The delegated cgroup2 subtree.
  mkdir -p "$cgroup2/pinfold-users"
  chmod 0755 "$cgroup2/pinfold-users"
  for c in $controllers; do
    v2_has "$c" || continue
    echo "+$c" > "$cgroup2/cgroup.subtree_control"
    echo "+$c" > "$cgroup2/pinfold-users/cgroup.subtree_control"
  done
  mkdir -p "$delegated/session"
  delegate_dir "$delegated"
  delegate_dir "$delegated/session"
  say "cgroup2 subtree $delegated delegated to uid $uid (shell goes in $delegated/session)"
  # Per controller, as pinfold decides (loader/limits.cpp): cgroup v2 when
  # its root offers it, else the v1 hierarchy of a hybrid host.
  for c in $controllers; do
    if v2_has "$c"; then
      say "limits: $c from cgroup v2 (enabled down to $cgroup2/pinfold-users)"
      continue
    fi
    m=$(v1_mount "$c")
    if [ -z "$m" ]; then
      say "limits: $c unavailable (neither cgroup v2 nor a v1 hierarchy has it); pinfold refuses that limit"
      continue
    fi
    mkdir -p "$m/pinfold-users/$uid"
    delegate_dir "$m/pinfold-users/$uid"
    say "limits: $c from cgroup v1 at $m/pinfold-users/$uid (cgroup v2 at $cgroup2 lacks it: hybrid host)"
  done

  # 3. The user's own bpffs for the link pins.
  mkdir -p /run/pinfold-bpf
  chmod 0755 /run/pinfold-bpf
  mkdir -p "$bpffs"
  if [ "$(stat -f -c %T "$bpffs")" != "bpf_fs" ]; then
    mount -t bpf -o mode=0700 bpf "$bpffs"
  fi
  chown "$uid:$gid" "$bpffs"
  chmod 0700 "$bpffs"
  say "bpffs for link pins: $bpffs"

  # 4. XDG_RUNTIME_DIR.
  if [ ! -d "$run_user" ]; then
    install -d -o "$uid" -g "$gid" -m 0700 "$run_user"
    touch "$state"
    echo "run_user" >> "$state"
  fi
  say "runtime directory: $run_user (XDG_RUNTIME_DIR)"
  say "next: as root, move the user's shell inside: $0 --enter PID $user"
  ;;

undo)
  # Live runs of the user end here: their cgroups are killed.
  move_out "$delegated/session" "$cgroup2"
  remove_tree "$delegated"
  rmdir "$cgroup2/pinfold-users" 2>/dev/null || true
  for c in $controllers; do
    m=$(v1_mount "$c"); [ -n "$m" ] || continue
    move_out "$m/pinfold-users/$uid" "$m"
    if [ -d "$m/pinfold-users/$uid" ]; then
      find "$m/pinfold-users/$uid" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$m/pinfold-users/$uid" ] && die "cannot remove $m/pinfold-users/$uid"
    fi
    rmdir "$m/pinfold-users" 2>/dev/null || true
  done
  if [ -d "$bpffs" ]; then
    if [ "$(stat -f -c %T "$bpffs")" = "bpf_fs" ]; then umount "$bpffs"; fi
    rmdir "$bpffs"
  fi
  if [ -f "$state" ] && grep -qx run_user "$state"; then
    rm -rf --one-file-system "$run_user"
  fi
  rm -f "$state"
  rmdir /run/pinfold-bpf 2>/dev/null || true
  if [ -n "$binary" ] && [ -f "$binary" ]; then
    setcap -r "$binary" 2>/dev/null || true
  fi
  say "undone for uid $uid"
  ;;
esac
