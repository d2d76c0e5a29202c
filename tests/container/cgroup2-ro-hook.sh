#!/bin/sh
# OCI createRuntime hook for the container-mode suite: mounts cgroup2 read-only
# at the container's /sys/fs/cgroup from inside its cgroup namespace, so the
# container sees its own cgroup as the root - what runc mounts on a cgroup v2
# host. This host is hybrid (cgroup2 at /sys/fs/cgroup/unified, no v2
# controllers), where rootful podman+runc mounts only the v1 hierarchies; the
# container's cgroup namespace, its v2 cgroup (runc creates one in the
# unified hierarchy too) and everything else are the engine's own.
# stdin: the OCI state (JSON) with the container's pid and bundle.
set -eu
state=$(cat)
eval "$(printf '%s' "$state" | python3 -c '
import json, os, shlex, sys
s = json.load(sys.stdin)
with open(os.path.join(s["bundle"], "config.json")) as f:
    root = json.load(f)["root"]["path"]
root = root if os.path.isabs(root) else os.path.join(s["bundle"], root)
print("pid=%d root=%s" % (s["pid"], shlex.quote(root)))')"
nsenter -t "$pid" -m -C mount -t cgroup2 -o ro,nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
