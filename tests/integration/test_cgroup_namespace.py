#!/usr/bin/env python3
"""pinfold started inside a cgroup namespace (as in a container with a
private cgroupns): the cgroup2 mount's root is not the global root, so the
level the BPF side looks sandboxes up by must be the kernel's global one.
Counted from the mount, every connect would be refused as "no sandbox"."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402


class CgroupNamespace(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        # Two levels deep, so the namespace root sits at global level >= 2.
        self.outer = os.path.join(pftest.cgroup2_root(), f"pinfold-cgns-test-{os.getpid()}")
        self.inner = os.path.join(self.outer, "job")
        os.makedirs(self.inner)

    def tearDown(self):
        for d in (os.path.join(self.inner, "pinfold"), self.inner, self.outer):
            try:
                os.rmdir(d)
            except OSError:
                pass
        super().tearDown()

    def test_steering_works_from_inside_a_cgroup_namespace(self):
        up = self.server("127.0.0.1")
        policy = self.write_policy(f"""
            name: cgns
            rules:
              - name: read
                endpoint: http://127.0.0.1:{up.port}/items/*
                methods: [GET]
        """)
        audit = os.path.join(self.tmp, "audit.jsonl")
        mount = pftest.cgroup2_root()
        # Join the job cgroup, enter a new cgroup and mount namespace, and
        # remount cgroup2 there so it shows the namespace root, as a
        # container runtime does.
        script = ('echo $$ > "$PF_CG/cgroup.procs" && exec unshare -C -m --propagation private '
                  'sh -c \'umount "$PF_MNT" && mount -t cgroup2 cgroup2 "$PF_MNT" && exec "$@"\' sh "$@"')
        env = dict(os.environ, PF_CG=self.inner, PF_MNT=mount)
        argv = ["sh", "-c", script, "sh", pftest.PINFOLD, "run", "--policy", policy, "--audit", audit, "--",
                "curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\\n%{http_code}\\n",
                up.url("/items/1"), up.url("/other")]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=pftest.RUN_TIMEOUT)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertIn("200", lines, proc.stdout + proc.stderr)
        self.assertIn("403", lines, proc.stdout + proc.stderr)
        with open(audit) as f:
            records = [json.loads(line) for line in f if line.strip()]
        verdicts = sorted((r.get("path"), r.get("verdict")) for r in records if r.get("event") == "http")
        self.assertEqual(verdicts, [("/items/1", "allow"), ("/other", "deny")], records)
        self.assertEqual([r["path"] for r in up.requests], ["/items/1"])
        # The run removed its own cgroups inside the namespace.
        left = os.path.join(self.inner, "pinfold")
        runs = [d for d in os.listdir(left) if os.path.isdir(os.path.join(left, d))] if os.path.isdir(left) else []
        self.assertEqual(runs, [])


if __name__ == "__main__":
    pftest.main()
