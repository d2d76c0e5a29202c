#!/usr/bin/env python3
"""README command 1 ends in scripts/demo.sh: it must show one allowed and
one denied request with their audit records, and exit 0."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class DemoTest(pftest.PinfoldTestCase):
    def test_demo_shows_allow_and_deny_and_exits_zero(self):
        build_dir = os.path.dirname(os.path.dirname(pftest.PINFOLD))
        env = dict(os.environ, PINFOLD_BUILD_DIR=build_dir)
        r = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo.sh")],
                           env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("-> HTTP 200", r.stdout)
        self.assertIn("-> HTTP 403", r.stdout)
        records = [json.loads(line) for line in r.stdout.splitlines()
                   if line.startswith("{")]
        verdicts = sorted(rec["verdict"] for rec in records if rec.get("event") == "http")
        self.assertEqual(verdicts, ["allow", "deny"], r.stdout)


if __name__ == "__main__":
    pftest.main()
