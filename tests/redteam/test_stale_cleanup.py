#!/usr/bin/env python3
"""Red team: a pinfold start cleans up only its own dead runs.

Stale-run cleanup kills cgroups and removes link pins. Aimed at the wrong
run, it would end someone else's live sandbox (or unpin its hooks). A run
is cleaned only through a free lock file in the cleaner's own runtime
directory, owned by the cleaner, and only what that lock records (the
cgroup by id, the pin directory by inode). Each test starts a live run,
then a second pinfold that has every reason to think the live run is
stale, and asserts the live run is untouched and still enforced.
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402


class StaleCleanupScope(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: test
            rules:
              - name: read
                endpoint: http://127.0.0.1:{self.up.port}/ok
                methods: [GET]
        """)
        os.chmod(self.tmp, 0o755)
        self.live = None

    def tearDown(self):
        if self.live and self.live.poll() is None:
            self.live.terminate()
            try:
                self.live.wait(timeout=15)
            finally:
                self.live.kill()
                self.live.wait(timeout=10)
        super().tearDown()

    def start_live_run(self):
        """A root run with the default locations whose command fetches an
        allowed URL once a go-file appears, then idles."""
        # The command runs as the workspace's owner (not root).
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.work)
        os.chown(self.work, 64000, 64000)
        self.go = os.path.join(self.work, "go")
        script = (f"while [ ! -e {self.go} ]; do sleep 0.05; done; "
                  f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}' {self.up.url('/ok')} > {self.work}/code; "
                  "exec sleep 60")
        audit = os.path.join(self.tmp, "live.jsonl")
        self.live = subprocess.Popen([pftest.PINFOLD, "run", "--policy", self.policy, "--audit", audit,
                                      "--workspace", self.work, "--", "sh", "-c", script], stdin=subprocess.DEVNULL)
        self.assertTrue(pftest.wait_for_descendant(self.live.pid, "sh"), "the live run did not start")
        name = f"run-{self.live.pid}"
        self.cgroup = os.path.join(pftest.cgroup2_root(), "pinfold", name)
        self.pins = os.path.join("/sys/fs/bpf/pinfold", name)
        self.lock = os.path.join("/run/pinfold", name + ".lock")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (os.path.isdir(self.cgroup) and os.listdir(self.pins)):
            time.sleep(0.05)
        return name

    def assert_live_run_intact(self):
        self.assertIsNone(self.live.poll(), "the live run ended")
        self.assertTrue(os.path.isdir(self.cgroup), "the live run's cgroup was removed")
        with open(os.path.join(self.cgroup, "cgroup.events")) as f:
            self.assertIn("populated 1", f.read(), "the live run's processes were killed")
        self.assertTrue(os.listdir(self.pins), "the live run's pins were removed")
        self.assertTrue(os.path.exists(self.lock), "the live run's lock was removed")
        # Still enforced: its command's request goes through the proxy.
        open(self.go, "w").close()
        code_file = os.path.join(self.work, "code")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (os.path.exists(code_file) and os.path.getsize(code_file)):
            time.sleep(0.05)
        with open(code_file) as f:
            self.assertEqual(f.read(), "200")
        self.assertEqual([r["path"] for r in self.up.requests], ["/ok"])

    def other_pinfold(self, runtime_dir, name="pinfold"):
        """A copy of pinfold elsewhere with its own runtime directory. (Named
        pinfold: older pinfolds of other suites running beside this one
        judge runs without a lock of theirs by the executable's name.)"""
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir, exist_ok=True)
        shutil.copy2(pftest.PINFOLD, os.path.join(bindir, name))
        shutil.copy2(os.path.join(os.path.dirname(pftest.PINFOLD), "pinfold-proxy"), bindir)
        audit = os.path.join(self.tmp, "other.jsonl")
        return subprocess.run([os.path.join(bindir, name), "run", "--policy", self.policy, "--audit", audit,
                               "--runtime-dir", runtime_dir, "--log-level", "info", "--", "true"],
                              capture_output=True, text=True, timeout=pftest.RUN_TIMEOUT, stdin=subprocess.DEVNULL)

    def test_other_runtime_dir_leaves_live_run_alone(self):
        self.start_live_run()
        runtime = os.path.join(self.tmp, "rt")
        r = self.other_pinfold(runtime)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("cleaning up stale run", r.stderr)
        self.assert_live_run_intact()

    def test_planted_stale_lock_naming_a_live_run(self):
        """A dead run's lock in the other runtime directory carries the live
        run's name (its pid was reused): the names match, the recorded
        cgroup id and pin inode do not."""
        name = self.start_live_run()
        runtime = os.path.join(self.tmp, "rt")
        os.makedirs(runtime, mode=0o700)
        with open(os.path.join(runtime, name + ".lock"), "w") as f:
            f.write(f"pid={self.live.pid}\nuid=0\ncgroup={self.cgroup}\ncgroup_id=1\n"
                    f"pins={self.pins}\npins_ino=1\n")
        r = self.other_pinfold(runtime)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"cleaning up stale run {name}", r.stderr)
        self.assertIn("not ours", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(runtime, name + ".lock")), "the dead lock itself goes")
        self.assert_live_run_intact()

    def test_lock_without_ids_spares_a_populated_cgroup(self):
        """A lock from a run that died before it recorded anything but its
        paths: a populated cgroup and a non-empty pin directory of that
        name cannot be its."""
        name = self.start_live_run()
        runtime = os.path.join(self.tmp, "rt")
        os.makedirs(runtime, mode=0o700)
        with open(os.path.join(runtime, name + ".lock"), "w") as f:
            f.write(f"pid={self.live.pid}\nuid=0\ncgroup={self.cgroup}\npins={self.pins}\n")
        r = self.other_pinfold(runtime)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_live_run_intact()

    def test_lock_of_another_uid_is_left(self):
        name = self.start_live_run()
        runtime = os.path.join(self.tmp, "rt")
        os.makedirs(runtime, mode=0o700)
        lock = os.path.join(runtime, name + ".lock")
        with open(lock, "w") as f:
            f.write(f"pid={self.live.pid}\nuid=64100\ncgroup={self.cgroup}\ncgroup_id=0\npins={self.pins}\n")
        r = self.other_pinfold(runtime)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("records uid 64100, not ours", r.stderr)
        self.assertTrue(os.path.exists(lock))
        self.assert_live_run_intact()

    def test_runtime_dir_of_another_owner_or_open_to_all_is_refused(self):
        for mode, owner, words in ((0o777, 0, "writable by others (mode 0777)"),
                                   (0o700, 64100, "owned by uid 64100")):
            runtime = os.path.join(self.tmp, f"rt-{owner}-{mode:o}")
            os.makedirs(runtime)
            os.chmod(runtime, mode)
            os.chown(runtime, owner, owner)
            r = self.other_pinfold(runtime)
            self.assertEqual(r.returncode, 125)
            self.assertIn(f"--runtime-dir {runtime}: {words}", r.stderr)


if __name__ == "__main__":
    pftest.main()
