#!/usr/bin/env python3
"""The namespace sandbox of `pinfold run`: filesystem view, ids, process
isolation, environment, limits and lifetime — real namespaces, real
cgroups, the real binary."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

PY = pftest.SANDBOX_PYTHON
# The workspace belongs to this uid: a root pinfold runs the command as the
# workspace's owner on the host, so the workspace is writable.
WS_UID = 64000


def marker():
    """A unique, harmless argument to find a test's processes by."""
    return f"{1000 + (time.monotonic_ns() % 100000) / 100000:.5f}"


def host_processes_with(text):
    out = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True).stdout.split()
    return [p for p in out if int(p) != os.getpid()]


class SandboxCase(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.ws = os.path.join(self.tmp, "ws")
        os.mkdir(self.ws)
        os.chown(self.ws, WS_UID, WS_UID)
        os.chmod(self.tmp, 0o755)
        self.policy = self.write_policy("""
            name: sandbox
            rules:
              - name: nothing
                endpoint: http://127.0.0.1:1/
        """)

    def sh(self, script, extra=(), **kw):
        return self.pinfold(self.policy, ["sh", "-c", textwrap.dedent(script)],
                            extra=["--workspace", self.ws, *extra], **kw)

    def py(self, code, extra=(), **kw):
        return self.pinfold(self.policy, [PY, "-c", textwrap.dedent(code)],
                            extra=["--workspace", self.ws, *extra], **kw)


class FilesystemView(SandboxCase):
    def test_workspace_is_writable_and_owned_by_its_owner(self):
        r = self.sh("echo hi > data.txt && pwd")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), self.ws)
        path = os.path.join(self.ws, "data.txt")
        self.assertEqual(open(path).read(), "hi\n")
        self.assertEqual(os.stat(path).st_uid, WS_UID)

    def test_writes_outside_the_workspace_fail(self):
        victims = ["/etc/pinfold-escape", "/usr/pinfold-escape", "/root/pinfold-escape",
                   "/var/tmp/pinfold-escape", os.path.join(self.tmp, "pinfold-escape")]
        r = self.py(f"""
            for path in {victims!r}:
                try:
                    open(path, "w").write("x")
                    print("WROTE", path)
                except OSError as e:
                    print("REFUSED", e.errno)
        """)
        lines = r.stdout.split("\n")
        self.assertEqual(len([x for x in lines if x.startswith("REFUSED")]), 4, r.stdout + r.stderr)
        for path in victims[:4]:
            self.assertFalse(os.path.exists(path), path)
        # The test's own tmp dir is under the host's /tmp, which the sandbox
        # does not see: the write lands in the private /tmp and vanishes.
        self.assertFalse(os.path.exists(victims[4]))

    def test_private_tmp_is_empty_and_vanishes(self):
        probe = tempfile.mkdtemp(prefix="pinfold-host-visible-")
        self.addCleanup(shutil.rmtree, probe, True)
        r = self.sh(f"ls -A /tmp; test -e {probe} && echo SEES_HOST_TMP; echo x > /tmp/left-behind; echo done")
        self.assertNotIn("SEES_HOST_TMP", r.stdout)
        self.assertIn("done", r.stdout, r.stderr)
        self.assertFalse(os.path.exists("/tmp/left-behind"))

    def test_root_is_read_only_and_dev_minimal(self):
        r = self.sh("touch /usr/x 2>&1; ls /dev | tr '\\n' ' '; echo; echo hi > /dev/null && echo devnull-ok; "
                    "head -c 4 /dev/urandom | wc -c")
        self.assertIn("Read-only file system", r.stdout)
        devs = set(r.stdout.split("\n")[1].split())
        self.assertTrue({"null", "zero", "urandom", "random", "tty", "pts", "shm", "fd"} <= devs, devs)
        self.assertFalse({"sda", "vda", "mem", "kmsg", "kvm"} & devs, devs)
        self.assertIn("devnull-ok", r.stdout)
        self.assertIn("4", r.stdout.split("\n")[-2])

    def test_runtime_dirs_and_pins_are_hidden(self):
        r = self.sh("for d in /sys/fs/bpf /run/pinfold /sys/fs/cgroup; do ls -A $d 2>&1 | head -3; echo \"$d:end\"; done")
        self.assertNotIn("pinfold/", r.stdout)
        self.assertNotIn("run-", r.stdout, r.stdout)
        self.assertNotIn("memory", r.stdout, r.stdout)
        self.assertNotIn("unified", r.stdout, r.stdout)

    def test_ro_rw_and_hide(self):
        os.mkdir(os.path.join(self.ws, "ro"))
        os.chown(os.path.join(self.ws, "ro"), WS_UID, WS_UID)
        os.mkdir(os.path.join(self.ws, "secret"))
        with open(os.path.join(self.ws, "secret", "token"), "w") as f:
            f.write("s3cr3t")
        extra_rw = tempfile.mkdtemp(prefix="pinfold-rw-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, extra_rw, True)
        os.chown(extra_rw, WS_UID, WS_UID)
        r = self.sh(f"""
            touch ro/x 2>/dev/null && echo RO_WRITABLE
            cat secret/token 2>/dev/null; ls -A secret
            touch {extra_rw}/y && echo RW_OK
        """, extra=["--ro", os.path.join(self.ws, "ro"), "--hide", os.path.join(self.ws, "secret"),
                    "--rw", extra_rw])
        self.assertNotIn("RO_WRITABLE", r.stdout)
        self.assertNotIn("s3cr3t", r.stdout)
        self.assertIn("RW_OK", r.stdout, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(extra_rw, "y")))

    def test_ca_bundle_is_mounted_over_the_distribution_path(self):
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        if not os.path.exists(bundle):
            self.fail("this test needs Debian's ca-certificates")
        r = self.sh(f"cmp -s {bundle} \"$SSL_CERT_FILE\" && echo SAME")
        self.assertEqual(r.stdout.strip(), "SAME", r.stderr)


class Identity(SandboxCase):
    def test_unprivileged_uid_no_caps_nnp_seccomp(self):
        r = self.sh("id -u; id -g; grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; hostname")
        lines = r.stdout.split("\n")
        self.assertEqual(lines[0], "1000", r.stderr)
        self.assertEqual(lines[1], "1000")
        status = dict(line.split(":\t") for line in lines[2:8])
        for cap in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            self.assertEqual(int(status[cap], 16), 0, status)
        self.assertEqual(status["NoNewPrivs"], "1")
        self.assertEqual(status["Seccomp"], "2")
        self.assertEqual(lines[8], "pinfold")

    def test_command_is_not_root_on_the_host(self):
        # The uid the host sees is the workspace's owner (see README).
        mark = marker()
        proc = subprocess.Popen([pftest.PINFOLD, "run", "--policy", self.policy, "--workspace", self.ws,
                                 "--", "sleep", mark], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            pids = []
            while not pids and time.monotonic() < deadline:
                pids = [p for p in host_processes_with(f"sleep {mark}")
                        if open(f"/proc/{p}/comm").read().strip() == "sleep"]
                time.sleep(0.05)
            self.assertTrue(pids, "the sandboxed sleep never appeared")
            with open(f"/proc/{pids[0]}/status") as f:
                uids = [line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:"))]
            self.assertEqual(uids[0], [str(WS_UID)] * 4)
            self.assertEqual(uids[1], [str(WS_UID)] * 4)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        pftest.assert_clean(self, proc.pid)

    def test_setuid_binary_does_not_grant_root(self):
        d = tempfile.mkdtemp(prefix="pinfold-suid-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        suid = os.path.join(d, "id")
        shutil.copy("/usr/bin/id", suid)
        os.chmod(suid, 0o4755)
        r = self.sh(f"{suid}; {PY} -c 'import os; os.setuid(0)' 2>&1 | tail -1")
        self.assertIn("uid=1000", r.stdout, r.stderr)
        self.assertNotIn("euid=0", r.stdout)
        # uid 0 is not even mapped in the sandbox's user namespace.
        self.assertRegex(r.stdout, "(PermissionError|OSError: \\[Errno 22\\])")

    def test_environment_is_cleared_except_the_allow_list(self):
        env = dict(os.environ, AWS_SECRET_ACCESS_KEY="host-secret", GITHUB_TOKEN="ghp_host", LANG="C.UTF-8")
        argv = [pftest.PINFOLD, "run", "--policy", self.policy, "--workspace", self.ws,
                "--env", "AGENT_MODE=triage", "--", "env"]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        seen = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        self.assertNotIn("AWS_SECRET_ACCESS_KEY", seen)
        self.assertNotIn("GITHUB_TOKEN", seen)
        self.assertEqual(seen["AGENT_MODE"], "triage")
        self.assertEqual(seen["LANG"], "C.UTF-8")
        self.assertEqual(seen["HOME"], "/tmp")
        self.assertIn("PATH", seen)


class Processes(SandboxCase):
    def test_host_processes_are_invisible(self):
        r = self.py(f"""
            import os
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            print(pids)
            print(open("/proc/1/comm").read().strip())
            try:
                os.kill({os.getpid()}, 0)
                print("HOST_PID_VISIBLE")
            except ProcessLookupError:
                print("ESRCH")
        """)
        lines = r.stdout.split("\n")
        pids = eval(lines[0])
        self.assertLessEqual(len(pids), 3, pids)   # init, the command (and nothing else)
        self.assertEqual(lines[1], "pinfold")
        self.assertEqual(lines[2], "ESRCH", r.stderr)

    def test_exit_code_propagates(self):
        self.assertEqual(self.sh("exit 7").returncode, 7)
        self.assertEqual(self.sh("true").returncode, 0)

    def test_death_by_signal_propagates(self):
        self.assertEqual(self.sh("kill -TERM $$").returncode, 128 + signal.SIGTERM)

    def test_signal_to_pinfold_is_forwarded(self):
        proc = subprocess.Popen([pftest.PINFOLD, "run", "--policy", self.policy, "--workspace", self.ws, "--",
                                 "sh", "-c", "trap 'echo got-term; exit 3' TERM; touch ready; "
                                             "while :; do sleep 0.05; done"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(self.ws, "ready")) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 3, err)
        self.assertIn("got-term", out)
        pftest.assert_clean(self, proc.pid)

    def test_double_forked_daemon_does_not_survive(self):
        mark = marker()
        r = self.sh(f"(setsid sh -c 'sleep {mark}' &) ; (nohup sleep {mark} >/dev/null 2>&1 &); sleep 0.2; exit 0")
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.monotonic() + 5
        while host_processes_with(f"sleep {mark}") and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(host_processes_with(f"sleep {mark}"), [])


class Limits(SandboxCase):
    def test_timeout_kills_a_sleep_tree_and_exits_124(self):
        mark = marker()
        r = self.sh(f"sleep {mark} & sh -c 'sleep {mark}' & sleep {mark}", extra=["--timeout", "2s"])
        self.assertEqual(r.returncode, 124, r.stderr)
        self.assertEqual(host_processes_with(f"sleep {mark}"), [])
        self.assertEqual(len(r.audit_where(event="timeout", verdict="deny")), 1, r.audit)
        self.assertIn("--timeout", r.stderr)

    def test_fork_bomb_stops_at_the_pids_limit(self):
        r = self.py("""
            import os, time
            children = 0
            try:
                for _ in range(500):
                    if os.fork() == 0:
                        time.sleep(30)
                        os._exit(0)
                    children += 1
            except BlockingIOError:
                print("EAGAIN after", children)
        """, extra=["--pids", "32"])
        self.assertIn("EAGAIN after", r.stdout, r.stderr)
        self.assertLess(int(r.stdout.split()[-1]), 32)
        limit = r.audit_where(event="limit", verdict="deny")
        self.assertEqual(len(limit), 1, r.audit)
        self.assertIn("process limit reached", limit[0]["reason"])
        self.assertIn("process limit reached", r.stderr)

    def test_memory_hog_is_oom_killed_and_reported(self):
        r = self.py("""
            chunks = []
            for _ in range(4096):
                chunks.append(bytearray(1 << 20))
            print("SURVIVED")
        """, extra=["--memory", "64M"])
        self.assertEqual(r.returncode, 128 + signal.SIGKILL, r.stderr)
        self.assertNotIn("SURVIVED", r.stdout)
        limit = r.audit_where(event="limit", verdict="deny")
        self.assertEqual(len(limit), 1, r.audit)
        self.assertIn("out of memory", limit[0]["reason"])
        self.assertIn("64 MiB", r.stderr)

    def test_cpu_limit_is_accepted(self):
        r = self.sh("echo ok", extra=["--cpus", "0.5", "--memory", "1G", "--pids", "100"])
        self.assertEqual(r.stdout.strip(), "ok", r.stderr)
        self.assertEqual(r.audit_where(event="limit"), [])


class BadInput(SandboxCase):
    def test_bad_limits_name_the_flag(self):
        for flag, value in (("--memory", "lots"), ("--cpus", "-1"), ("--pids", "0"), ("--timeout", "5 parsecs"),
                            ("--env", "NOVALUE"), ("--sandbox", "maybe")):
            out = subprocess.run([pftest.PINFOLD, "run", "--policy", self.policy, flag, value, "--", "true"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(out.returncode, 2, (flag, out.stderr))
            self.assertIn(flag, out.stderr)

    def test_missing_workspace_fails_before_anything_is_created(self):
        r = self.pinfold(self.policy, ["true"], extra=["--workspace", "/nonexistent/ws"])
        self.assertEqual(r.returncode, 125)
        self.assertIn("--workspace", r.stderr)


if __name__ == "__main__":
    pftest.main()
