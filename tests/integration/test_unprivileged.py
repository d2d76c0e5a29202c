#!/usr/bin/env python3
"""pinfold as an ordinary user: a copy of the binary with file capabilities
(cap_bpf,cap_net_admin,cap_perfmon+ep) and a cgroup subtree, a bpffs and a
runtime directory delegated by scripts/setup-unprivileged.sh to uid 64100
(no passwd entry needed).

The sandbox and run suites (test_sandbox.py, and the policy decisions and
lifecycle of test_run.py) run again, unchanged, with every `pinfold`
started as that user from inside the delegated subtree; the tests below add
what only this mode has: capabilities gone after loading, the user's state
private and cleaned, root's runs out of reach, a caller outside the
delegated subtree told why. Everything is undone at the end (setup
script --undo), and every process is stopped by PID.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
import pftest  # noqa: E402

UID = 64100
SETUP = os.path.join(HERE, "..", "..", "scripts", "setup-unprivileged.sh")
ROOT_PINFOLD = pftest.PINFOLD
XDG = f"/run/user/{UID}"
PINS = f"/run/pinfold-bpf/{UID}"

STATE = {}


def delegated():
    return os.path.join(pftest.cgroup2_root(), "pinfold-users", str(UID))


def setUpModule():
    pftest.require_root()
    if subprocess.run(["getent", "passwd", str(UID)], capture_output=True).returncode == 0:
        raise SystemExit(f"uid {UID} has a passwd entry here; the test needs it unused")
    # A private, root-owned copy: file capabilities go on it, not on the build.
    bindir = tempfile.mkdtemp(prefix="pinfold-unpriv-")
    os.chmod(bindir, 0o755)
    for name in ("pinfold", "pinfold-proxy"):
        shutil.copy2(os.path.join(os.path.dirname(ROOT_PINFOLD), name), bindir)
    binary = os.path.join(bindir, "pinfold")
    STATE["bindir"], STATE["binary"] = bindir, binary
    r = subprocess.run([SETUP, "--binary", binary, str(UID)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        shutil.rmtree(bindir, ignore_errors=True)
        raise SystemExit(f"setup-unprivileged.sh failed: {r.stdout}{r.stderr}")
    STATE["setup_output"] = r.stdout
    # Every `pinfold` of the reused suites goes through this: moved into
    # the delegated subtree (by root, as a login would), then the user.
    wrapper = os.path.join(bindir, "as-user")
    with open(wrapper, "w") as f:
        f.write(textwrap.dedent(f"""\
            #!/bin/sh
            {SETUP} --enter $$ {UID} >/dev/null || exit 125
            exec setpriv --reuid {UID} --regid {UID} --clear-groups --inh-caps=-all \\
                env XDG_RUNTIME_DIR={XDG} {binary} "$@"
            """))
    os.chmod(wrapper, 0o755)
    STATE["wrapper"] = wrapper
    pftest.PINFOLD = wrapper
    STATE["root_leftovers"] = pftest.leftovers
    pftest.leftovers = user_leftovers


def tearDownModule():
    pftest.PINFOLD = ROOT_PINFOLD
    if "root_leftovers" in STATE:
        pftest.leftovers = STATE["root_leftovers"]
    if "binary" in STATE:
        r = subprocess.run([SETUP, "--binary", STATE["binary"], "--undo", str(UID)], capture_output=True, text=True,
                           timeout=60)
        shutil.rmtree(STATE["bindir"], ignore_errors=True)
        if r.returncode != 0:
            raise SystemExit(f"setup-unprivileged.sh --undo failed: {r.stdout}{r.stderr}")
        left = [p for p in (delegated(), PINS, XDG) if os.path.exists(p)]
        if left:
            raise SystemExit(f"--undo left {left}")


def user_leftovers(run_pid=None):
    """Root's leftovers plus the user's: its run cgroup, pins, lock, bundle."""
    found = STATE["root_leftovers"](run_pid)
    name = f"run-{run_pid}" if run_pid is not None else None
    for kind, parent, suffix in (("cgroup", os.path.join(delegated(), "pinfold"), ""), ("pin", PINS, ""),
                                 ("lock", f"{XDG}/pinfold", ".lock"), ("bundle", f"{XDG}/pinfold-trust", "")):
        if os.path.isdir(parent):
            found += [f"{kind} {parent}/{d}" for d in os.listdir(parent)
                      if d.startswith("run-") and (name is None or d == name + suffix)]
    return found


def user_processes():
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == UID:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


# The suites, run again as the user. Their workspace belongs to the user
# (a non-root pinfold runs the command with its own uid), and so does the
# test's scratch directory (audit files are opened by the user's pinfold).
import test_run  # noqa: E402
import test_sandbox  # noqa: E402

test_sandbox.WS_UID = UID


class AsUser:
    def setUp(self):
        super().setUp()
        os.chown(self.tmp, UID, UID)
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        super().tearDown()
        # Nothing of the user may outlive a run.
        deadline = time.monotonic() + 5
        while user_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(user_processes(), [], "a process of the user outlived the test")


def reuse(module, *names):
    for name in names:
        base = getattr(module, name)
        globals()[f"User{name}"] = type(f"User{name}", (AsUser, base), {"__doc__": base.__doc__})


reuse(test_sandbox, *[n for n, c in vars(test_sandbox).items()
                      if isinstance(c, type) and issubclass(c, pftest.PinfoldTestCase)
                      and c is not test_sandbox.SandboxCase and n != "SandboxCase"])
reuse(test_run, "PolicyDecisions", "Lifecycle")

# --allow-private-netns under a non-root pinfold's namespace sandbox (the
# --sandbox off refusal is root's; as the user that mode gets Landlock:
# tests/container/test_rootless_podman.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "redteam"))
import test_private_netns  # noqa: E402

UserPrivateNetns = type("UserPrivateNetns", (AsUser, test_private_netns.PrivateNetns),
                        {"test_refused_with_sandbox_off_as_root": None})


class UnprivilegedMode(AsUser, pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.ws = os.path.join(self.tmp, "ws")
        os.mkdir(self.ws)
        os.chown(self.ws, UID, UID)
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: user
            rules:
              - name: read-items
                endpoint: http://127.0.0.1:{self.up.port}/items/*
                methods: [GET]
        """)

    def run_user(self, script, extra=(), wrapper=None, timeout=pftest.RUN_TIMEOUT):
        audit = os.path.join(self.tmp, f"audit-{time.monotonic_ns()}.jsonl")
        argv = [wrapper or STATE["wrapper"], "run", "--policy", self.policy, "--audit", audit,
                "--workspace", self.ws, *extra, "--", "sh", "-c", textwrap.dedent(script)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        result = pftest.Result(proc, audit)
        return result

    def test_setup_reports_where_limits_come_from(self):
        out = STATE["setup_output"]
        self.assertIn(f"delegated to uid {UID}", out)
        with open(os.path.join(pftest.cgroup2_root(), "cgroup.controllers")) as f:
            v2 = f.read().split()
        for c in ("memory", "pids", "cpu"):
            if c in v2:
                self.assertIn(f"limits: {c} from cgroup v2", out)
            else:
                self.assertIn(f"limits: {c} from cgroup v1 at /sys/fs/cgroup/{c}/pinfold-users/{UID}", out)
        caps = subprocess.run(["getcap", STATE["binary"]], capture_output=True, text=True).stdout
        for cap in ("cap_bpf", "cap_net_admin", "cap_perfmon"):
            self.assertIn(cap, caps)

    def test_pinfold_and_proxy_hold_no_capabilities_once_running(self):
        self.check_capabilities_dropped([])

    def test_capabilities_dropped_with_sandbox_off_too(self):
        # Hooks-only runs (rootless Podman, docs/containers.md) included.
        self.check_capabilities_dropped(["--sandbox", "off", "--trusted-command"])

    def test_sandbox_off_needs_a_trusted_command(self):
        # As the user, CMD would own the delegated cgroup subtree: `echo $$ >
        # .../session/cgroup.procs` takes it out of the run's cgroup and off
        # every hook (measured: a denied path then got 200). So the run is
        # refused unless the caller vouches for CMD.
        marker = os.path.join(self.ws, "ran")
        r = self.run_user(f"touch {marker}", extra=("--sandbox", "off"))
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("--trusted-command", r.stderr)
        self.assertIn("cgroup", r.stderr)
        self.assertFalse(os.path.exists(marker))
        self.assertEqual(self.up.requests, [])

    def check_capabilities_dropped(self, extra):
        go = os.path.join(self.ws, "go")
        audit = os.path.join(self.tmp, f"a-{len(extra)}.jsonl")
        proc = subprocess.Popen([STATE["wrapper"], "run", "--policy", self.policy, "--audit", audit,
                                 "--workspace", self.ws, *extra, "--", "sh", "-c",
                                 f"while [ ! -e {go} ]; do sleep 0.05; done"], stdin=subprocess.DEVNULL,
                                cwd=self.ws)
        try:
            self.assertTrue(pftest.wait_for_descendant(proc.pid, "sh"), "the command did not start")
            status = {}
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    status[key] = value.strip()
            self.assertEqual(status["Name"], "pinfold")
            self.assertEqual(status["Uid"].split()[1], str(UID))
            self.assertEqual(int(status["CapEff"], 16), 0, status)
            self.assertEqual(int(status["CapPrm"], 16), 0, status)
            proxies = [p for p in subprocess.run(["pgrep", "-P", str(proc.pid), "-x", "pinfold-proxy"],
                                                 capture_output=True, text=True).stdout.split()]
            self.assertEqual(len(proxies), 1)
            with open(f"/proc/{proxies[0]}/status") as f:
                text = f.read()
            self.assertIn("CapEff:\t0000000000000000", text)
            self.assertIn(f"Uid:\t{UID}\t{UID}\t{UID}", text)
            # The run's state is the user's, in the user's places.
            name = f"run-{proc.pid}"
            for path in (os.path.join(delegated(), "pinfold", name), os.path.join(PINS, name),
                         f"{XDG}/pinfold/{name}.lock"):
                self.assertTrue(os.path.exists(path), path)
                self.assertEqual(os.stat(path).st_uid, UID, path)
            self.assertEqual(stat.S_IMODE(os.stat(f"{XDG}/pinfold").st_mode), 0o700)
            self.assertTrue(os.listdir(os.path.join(PINS, name)), "no link pins")
        finally:
            if not os.path.exists(go):
                open(go, "w").close()
            code = proc.wait(timeout=30)
        self.assertEqual(code, 0)
        pftest.assert_clean(self, proc.pid)

    def test_sandbox_sees_none_of_the_users_runtime_state(self):
        r = self.run_user(f"""
            ls -A {XDG}; echo ---
            ls -A {PINS} 2>&1; echo ---
            ls -A {XDG}/pinfold-trust; echo ---
            test -r "$SSL_CERT_FILE" && echo bundle-readable
            touch {XDG}/x 2>/dev/null || echo no-write
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        parts = r.stdout.split("---\n")
        self.assertEqual(parts[0].split(), ["pinfold-trust"])   # sockets, locks: gone
        self.assertNotIn("run-", parts[1])                       # pins: an empty, closed directory
        self.assertEqual(len(parts[2].split()), 1)               # only this run's bundle
        self.assertIn("bundle-readable", parts[3])
        self.assertIn("no-write", parts[3])

    def test_run_user_is_replaced_without_xdg_runtime_dir(self):
        # cron, sudo -u, a CI shell executor: XDG_RUNTIME_DIR unset. The
        # user's sockets in /run/user/<uid> are still out of reach (a podman
        # API socket there would start containers outside the run).
        marker = os.path.join(XDG, "podman.sock")
        with open(marker, "w"):
            pass
        os.chown(marker, UID, UID)
        wrapper = os.path.join(STATE["bindir"], "as-user-no-xdg")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\n{SETUP} --enter $$ {UID} >/dev/null || exit 125\n"
                    f"exec setpriv --reuid {UID} --regid {UID} --clear-groups --inh-caps=-all "
                    f"env -u XDG_RUNTIME_DIR {STATE['binary']} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        try:
            r = self.run_user(f"ls -A {XDG}; test -e {marker} && echo SEEN || echo HIDDEN", wrapper=wrapper)
        finally:
            os.unlink(marker)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("HIDDEN", r.stdout)
        self.assertNotIn("podman.sock", r.stdout)

    def test_allowed_and_denied_requests_with_audit(self):
        r = self.run_user(f"""
            curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' {self.up.url('/items/1')}
            curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' -X DELETE {self.up.url('/items/1')}
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["200", "403"])
        self.assertEqual([q["method"] for q in self.up.requests], ["GET"])
        allow = r.audit_where(event="http", verdict="allow")
        deny = r.audit_where(event="http", verdict="deny")
        self.assertEqual(len(allow), 1, r.audit)
        self.assertEqual(len(deny), 1, r.audit)
        self.assertEqual(allow[0]["uid"], UID)
        self.assertEqual(deny[0]["method"], "DELETE")

    def test_caller_outside_the_delegated_subtree_is_told_why(self):
        # The user, but started from root's cgroup: no --enter.
        wrapper = os.path.join(STATE["bindir"], "as-user-outside")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec setpriv --reuid {UID} --regid {UID} --clear-groups --inh-caps=-all "
                    f"env XDG_RUNTIME_DIR={XDG} {STATE['binary']} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        r = self.run_user("true", wrapper=wrapper)
        self.assertEqual(r.returncode, 125)
        self.assertIn(f"which is not delegated to uid {UID}", r.stderr)
        self.assertIn("setup-unprivileged.sh", r.stderr)
        # With the delegated cgroup named but the caller still outside it.
        r = self.run_user("true", wrapper=wrapper, extra=["--cgroup-parent", os.path.join(delegated(), "pinfold")])
        self.assertEqual(r.returncode, 125)
        self.assertIn("cgroup.procs, which uid 64100 does not have", r.stderr)

    def test_roots_runs_are_out_of_reach(self):
        """A live root run: the user's pinfold neither cleans it nor can be
        pointed at its locks, pins or cgroups."""
        root_ws = os.path.join(self.tmp, "root-ws")
        os.mkdir(root_ws)
        os.chown(root_ws, 64000, 64000)
        go = os.path.join(root_ws, "go")
        audit = os.path.join(self.tmp, "root.jsonl")
        live = subprocess.Popen([ROOT_PINFOLD, "run", "--policy", self.policy, "--audit", audit,
                                 "--workspace", root_ws, "--", "sh", "-c",
                                 f"while [ ! -e {go} ]; do sleep 0.05; done"], stdin=subprocess.DEVNULL)
        try:
            self.assertTrue(pftest.wait_for_descendant(live.pid, "sh"), "the root run did not start")
            name = f"run-{live.pid}"
            cgroup = os.path.join(pftest.cgroup2_root(), "pinfold", name)
            pins = os.path.join("/sys/fs/bpf/pinfold", name)
            lock = f"/run/pinfold/{name}.lock"
            # A run of the user's own next to it: no cleanup touches root's.
            r = self.run_user("true", extra=["--log-level", "info"])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn(name, r.stderr)
            # Pointed at root's places: refused, naming the path.
            for flag, value, words in (("--runtime-dir", "/run/pinfold", "owned by uid 0"),
                                       ("--bpffs-dir", "/sys/fs/bpf/pinfold", "/sys/fs/bpf/pinfold"),
                                       ("--cgroup-parent", "/pinfold", "pinfold")):
                r = self.run_user("true", extra=[flag, value])
                self.assertEqual(r.returncode, 125, (flag, r.stderr))
                self.assertIn(words, r.stderr, flag)
            # Nor can the user reach root's pins or locks directly.
            for path in (pins, lock):
                r = subprocess.run(["setpriv", "--reuid", str(UID), "--regid", str(UID), "--clear-groups",
                                    "ls", "-l", path], capture_output=True, text=True)
                self.assertNotEqual(r.returncode, 0, path)
                self.assertIn("Permission denied", r.stderr)
            self.assertIsNone(live.poll(), "root's run ended")
            with open(os.path.join(cgroup, "cgroup.events")) as f:
                self.assertIn("populated 1", f.read())
            self.assertTrue(os.listdir(pins))
            self.assertTrue(os.path.exists(lock))
        finally:
            open(go, "w").close()
            code = live.wait(timeout=30)
        self.assertEqual(code, 0)
        deadline = time.monotonic() + 5
        while STATE["root_leftovers"](live.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(STATE["root_leftovers"](live.pid), [])


if __name__ == "__main__":
    pftest.main()
