#!/usr/bin/env python3
"""Container mode in a real rootful Podman container: pinfold's image, run as
root with only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (`--cap-drop all`), the
shipped seccomp profile, a private cgroup namespace, no --privileged. The
job's traffic is steered, the proxy's is not, the job's attempts to forge or
borrow the proxy's exemption fail (the red-team job of
tests/redteam/test_container_exemption.py, run inside the container), and a
mark that leaked anyway admits one connect (its helper, run on the host in
the container's cgroup).

What differs from a CI runner here, and why:
- This host is hybrid (cgroup2 at /sys/fs/cgroup/unified, no v2 controllers):
  podman+runc mounts only the v1 hierarchies in the container. An OCI hook
  (cgroup2-ro-hook.sh) mounts cgroup2 read-only at /sys/fs/cgroup from the
  container's own cgroup namespace, as runc does on a cgroup v2 host.
- `--network host`, so the test's servers (on the host's loopback, bound to
  port 0) are outside the container's cgroup; a runner's bridge network
  changes nothing for the hooks (pinfold checks its own netns).
- The binaries under test (PINFOLD_BIN's directory) are mounted over the
  image's, and a layer adds curl and python3 for the job: the image is
  rebuilt by test_containerfile, not here.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "redteam"))
import image  # noqa: E402
import pftest  # noqa: E402
import test_container_exemption as redteam  # noqa: E402

CLIENT_IMAGE = "localhost/pinfold-client:test"
PROFILE = os.path.join(image.SOURCE_DIR, "container", "seccomp-bpf.json")
HOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cgroup2-ro-hook.sh")
LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lib"))
CAPS = ["--cap-drop", "all", "--cap-add", "CAP_BPF", "--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_PERFMON"]


def image_exists(name):
    return subprocess.run(["podman", "image", "exists", name], timeout=60).returncode == 0


class ContainerMode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise SystemExit("the container suite needs root (rootful podman)")
        cls.bin_dir = os.path.dirname(os.path.abspath(pftest.PINFOLD))
        for b in ("pinfold", "pinfold-proxy"):
            if not os.access(os.path.join(cls.bin_dir, b), os.X_OK):
                raise SystemExit(f"no {b} in {cls.bin_dir} (set PINFOLD_BIN)")
        with tempfile.TemporaryFile(mode="w+") as log:
            try:
                if not image_exists(image.IMAGE):
                    image.build_image(log)
                subprocess.run(["podman", "build", "--pull=never", *image.podman_flags(), "-t", CLIENT_IMAGE, "-f", "-",
                                os.path.dirname(HOOK)],
                               input=f"FROM {image.IMAGE}\nUSER root\n"
                                     "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                                     "--no-install-recommends python3 curl >/dev/null && rm -rf /var/lib/apt/lists/*\n",
                               text=True, check=True, stdout=log, stderr=subprocess.STDOUT, timeout=900)
            except Exception:
                log.seek(0)
                print(log.read()[-6000:], file=sys.stderr)
                raise
        cls.dir = tempfile.mkdtemp(prefix="pinfold-ctmode-")
        hooks = os.path.join(cls.dir, "hooks.d")
        os.makedirs(hooks)
        with open(os.path.join(hooks, "cgroup2-ro.json"), "w") as f:
            json.dump({"version": "1.0.0", "hook": {"path": HOOK}, "when": {"always": True},
                       "stages": ["createRuntime"]}, f)
        cls.hooks = hooks

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pinfold-ct-", dir=self.dir)
        os.chmod(self.tmp, 0o777)
        self.up = pftest.CountingServer("127.0.0.1")
        self.addCleanup(self.up.close)
        self.policy = os.path.join(self.tmp, "policy.yaml")
        with open(self.policy, "w") as f:
            f.write(f"name: container\nrules:\n  - name: read\n"
                    f"    endpoint: http://127.0.0.1:{self.up.port}/items/*\n    methods: [GET]\n")

    def podman_argv(self, command, seccomp=PROFILE, caps=CAPS):
        security = ["--security-opt", f"seccomp={seccomp}"] if seccomp else []
        argv = ["podman", "--hooks-dir", self.hooks, "run", "--rm", *image.podman_flags(),
                "--cgroupns", "private", "--network", "host", "--user", "0", *caps, *security,
                "-v", f"{self.bin_dir}/pinfold:/usr/local/bin/pinfold:ro",
                "-v", f"{self.bin_dir}/pinfold-proxy:/usr/local/bin/pinfold-proxy:ro",
                "-v", f"{LIB}:{LIB}:ro", "-v", f"{self.tmp}:/out",
                "--entrypoint", "pinfold", CLIENT_IMAGE,
                "run", "--sandbox", "off", "--policy", "/out/policy.yaml", "--audit", "/out/audit.jsonl",
                "--", *command]
        return argv

    def pinfold_in_container(self, command, **kw):
        proc = subprocess.run(self.podman_argv(command, **kw), capture_output=True, text=True, timeout=180)
        return pftest.Result(proc, os.path.join(self.tmp, "audit.jsonl"))

    def test_the_job_is_steered_and_the_proxy_reaches_upstream(self):
        r = self.pinfold_in_container(["curl", "-sS", "--max-time", "10", "-w", "%{http_code}\\n",
                                       "-o", "/dev/null", self.up.url("/items/1"),
                                       "-o", "/dev/null", self.up.url("/other")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["200", "403"], r.stdout + r.stderr)
        self.assertEqual(sorted((a["path"], a["verdict"]) for a in r.audit_where(event="http")),
                         [("/items/1", "allow"), ("/other", "deny")], r.audit)
        self.assertEqual([q["path"] for q in self.up.requests], ["/items/1"])
        reasons = " ".join(a["reason"] for a in r.audit_where(event="container-mode"))
        self.assertIn("read-only", reasons)
        self.assertIn("limits are unavailable", reasons)

    def test_the_job_cannot_forge_or_borrow_the_exemption(self):
        code = redteam.JOB.format(lib=LIB, port=self.up.port)
        r = self.pinfold_in_container(["python3", "-c", code])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.splitlines()[-1])
        self.assertEqual(out["own_bpf_fds"], [])
        self.assertEqual(out["next_map_id"], "EPERM")
        self.assertEqual(out["map_by_id"], ["EPERM"])
        self.assertEqual(out["load_prog"], "EPERM")
        self.assertTrue(out["found_proxy"], out)
        for who in ("proxy", "pinfold"):
            self.assertEqual(out[f"{who}_fd_open"], ["PermissionError"], out)
            self.assertEqual(out[f"{who}_getfd"], ["EPERM"], out)
            self.assertEqual(out[f"{who}_ptrace"], "EPERM", out)
        self.assertNotIn(None, out["self_mark"])
        self.assertIn("403", out["response"])
        self.assertEqual(len(r.audit_where(event="http", verdict="deny", path="/forged")), 1, r.audit)
        self.assertEqual(self.up.requests, [])

    def test_a_leaked_mark_admits_one_connect_and_reply_marks_none(self):
        # The red-team helper, run on the host as root in the container's
        # cgroup with the proxy's map fd, plays a socket that leaked anyway.
        wait = ("import os, time\n"
                "for _ in range(1200):\n"
                "    if os.path.exists('/out/go'):\n"
                "        break\n"
                "    time.sleep(0.05)\n")
        run = subprocess.Popen(self.podman_argv(["python3", "-c", wait]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            proxy = self.wait_for_container_proxy(run)
            with open(f"/proc/{proxy}/cgroup") as f:
                own = [line[3:].strip() for line in f if line.startswith("0::")][0]
            procs = os.path.join(pftest.cgroup2_root(), own.lstrip("/"), "cgroup.procs")
            helper = subprocess.run(
                [sys.executable, "-c", redteam.HELPER.format(lib=LIB, procs=procs, proxy=proxy, port=self.up.port)],
                capture_output=True, text=True, timeout=60)
        finally:
            open(os.path.join(self.tmp, "go"), "w").close()
            stdout, stderr = run.communicate(timeout=180)
        self.assertEqual(helper.returncode, 0, helper.stderr)
        self.assertEqual(run.returncode, 0, stderr)
        out = json.loads(helper.stdout.splitlines()[-1])
        result = pftest.Result(run, os.path.join(self.tmp, "audit.jsonl"))
        self.assertIsNone(out["mark"])
        self.assertIn("200", out["first"])
        self.assertIsNone(out["disconnect"])
        self.assertIn("403", out["second"])
        self.assertIn("403", out["reply_mark_connect"])
        self.assertEqual(out["reply_mark_offhost"], "PermissionError")
        self.assertEqual([q["path"] for q in self.up.requests], ["/first"])
        self.assertEqual(sorted(a["path"] for a in result.audit_where(event="http", verdict="deny")),
                         ["/reply-mark", "/second"], result.audit)
        self.assertEqual(len(result.audit_where(event="sendmsg", verdict="deny")), 1, result.audit)

    def wait_for_container_proxy(self, run):
        """The host pid of the container's pinfold-proxy, once the job (a
        python3 sibling) runs; bounded."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if run.poll() is not None:
                raise AssertionError(f"the container exited early: {run.stderr.read()}")
            procs = {pid: (comm, ppid) for pid, comm, ppid in pftest.processes()}
            for pid, (comm, ppid) in procs.items():
                if comm != "pinfold-proxy" or ppid not in procs:
                    continue
                try:
                    with open(f"/proc/{ppid}/cmdline", "rb") as f:
                        parent_cmdline = f.read()
                except OSError:
                    continue
                # Our run: pinfold's argv holds the job's wait script.
                if b"/out/go" not in parent_cmdline:
                    continue
                if any(c == "python3" and p == ppid for c, p in procs.values()):
                    return pid
            time.sleep(0.05)
        raise AssertionError("the container's proxy and job did not start")

    def test_without_the_shipped_seccomp_profile_pinfold_says_why(self):
        # The engine's default profile allows bpf() only with CAP_SYS_ADMIN.
        r = self.pinfold_in_container(["true"], seccomp=None)
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("CAP_BPF", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
