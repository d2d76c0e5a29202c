"""pinfold as it runs in a CAP_BPF container, reproduced without a container
engine so the container-mode suites run on any host and in the kernel VMs:

- its own cgroup (made by the test, two levels deep) is the root of a
  private cgroup namespace, and cgroup2 is mounted read-only at the usual
  place in a private mount namespace (what runc does on a cgroup v2 host);
- it holds only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (bounding, permitted,
  effective), as with `--cap-drop all --cap-add ...`, uid 0.

What differs from a real container: the host's root filesystem, network
namespace and seccomp (none) stay; tests/container/test_container_mode.py
runs the same checks under rootful Podman.
"""
import os
import shlex
import signal
import subprocess
import time

import pftest

CONTAINER_CAPS = ("bpf", "net_admin", "perfmon")


class ContainerCgroup:
    """A cgroup two levels below the cgroup2 root for one emulated container;
    `close` kills what is left in it and removes it."""

    def __init__(self, tag):
        self.outer = os.path.join(pftest.cgroup2_root(), f"pinfold-ct-{tag}-{os.getpid()}")
        self.path = os.path.join(self.outer, "ct")
        os.makedirs(self.path)

    def pids(self):
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def close(self):
        deadline = time.monotonic() + 5
        while self.pids() and time.monotonic() < deadline:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        subdirs = [os.path.join(self.path, d) for d in os.listdir(self.path)
                   if os.path.isdir(os.path.join(self.path, d))] if os.path.isdir(self.path) else []
        for d in (*subdirs, self.path, self.outer):
            try:
                os.rmdir(d)
            except OSError:
                pass


def prefix(cgroup, caps=CONTAINER_CAPS, own_subdir=None):
    """argv that execs the rest of the command line (pinfold ...) inside the
    emulated container of `cgroup`. `own_subdir`: move into this child
    cgroup after entering the namespace (a process that is not in the
    container's own cgroup)."""
    mnt = pftest.cgroup2_root()
    capset = ",".join(["-all"] + [f"+{c}" for c in caps])
    move = ""
    if own_subdir:
        sub = os.path.join(cgroup.path, own_subdir)
        os.makedirs(sub, exist_ok=True)
        move = f"echo $$ > {shlex.quote(os.path.join(sub, 'cgroup.procs'))} && "
    inner = (f"{move}umount {shlex.quote(mnt)} && "
             f"mount -t cgroup2 -o ro,nosuid,nodev,noexec cgroup2 {shlex.quote(mnt)} && "
             f"exec setpriv --bounding-set={capset} --inh-caps={capset} --ambient-caps={capset} \"$@\"")
    outer = (f"echo $$ > {shlex.quote(os.path.join(cgroup.path, 'cgroup.procs'))} && "
             f"exec unshare -C -m --propagation private sh -c {shlex.quote(inner)} sh \"$@\"")
    return ["sh", "-c", outer, "sh"]


def run_pinfold(test, cgroup, policy, command, extra=("--sandbox", "off"), own_subdir=None,
                timeout=pftest.RUN_TIMEOUT, check_clean=True, caps=CONTAINER_CAPS):
    """`pinfold run` inside the emulated container of `cgroup`; a
    pftest.Result with the audit records (and .pid, pinfold's pid: the
    prefix only execs)."""
    audit = os.path.join(test.tmp, f"audit-{time.monotonic_ns()}.jsonl")
    argv = [*prefix(cgroup, caps=caps, own_subdir=own_subdir), pftest.PINFOLD, "run", "--policy", policy, "--audit", audit,
            *extra, "--", *command]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        proc.stdout, proc.stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    result = pftest.Result(proc, audit)
    result.pid = proc.pid
    if check_clean:
        pftest.assert_clean(test, proc.pid)
    return result
