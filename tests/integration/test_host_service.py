#!/usr/bin/env python3
"""Host-side services (fullsend ADR-0017, docs/credentials.md): `--service
NAME=127.0.0.1:PORT,token-file=PATH` writes a fresh bearer token for the
service (examples/host_service.py) and the proxy adds it to every allowed
request for http://NAME:PORT/. The service rejects requests without it; the
sandbox never holds it."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

def read(path):
    with open(path) as f:
        return f.read()


EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "host_service.py")


class HostService(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.token_file = os.path.join(self.tmp, "notes.token")
        ready = os.path.join(self.tmp, "ready")
        self.service = subprocess.Popen([sys.executable, EXAMPLE, "--token-file", self.token_file,
                                         "--ready-file", ready])
        deadline = time.monotonic() + 10
        while not os.path.exists(ready) or not read(ready):
            self.assertLess(time.monotonic(), deadline, "example service did not start")
            self.assertIsNone(self.service.poll())
            time.sleep(0.05)
        self.port = int(read(ready))
        self.policy = self.write_policy(f"""
            name: service
            rules:
              - name: notes
                endpoint: http://notes:{self.port}/notes
                methods: [GET, POST]
              - name: notes-by-address
                endpoint: http://127.0.0.1:{self.port}/notes
                methods: [GET]
        """)

    def tearDown(self):
        self.service.terminate()
        self.service.wait(timeout=10)
        super().tearDown()

    def run_sh(self, script):
        return self.pinfold(self.policy, ["sh", "-c", script],
                            extra=["--service", f"notes=127.0.0.1:{self.port},token-file={self.token_file}"])

    def curl(self, url, *args):
        return (f"curl -sS --max-time 10 --resolve notes:{self.port}:127.0.0.1 -o - -w '\\n%{{http_code}}\\n' "
                f"{' '.join(args)} '{url}'; ")

    def test_allowed_requests_carry_the_token_the_sandbox_never_does(self):
        url = f"http://notes:{self.port}/notes"
        r = self.run_sh(self.curl(url, "-X POST", "--data-binary hello") + self.curl(url)
                        + self.curl(url, "-H 'Authorization: Bearer forged'")
                        + f"cat '{self.token_file}' 2>&1; echo; env")
        token = read(self.token_file).strip()
        self.assertEqual(len(token), 64)
        out = [line for line in r.stdout.split("\n") if line]
        self.assertEqual(out[0:2], ['{"count": 1}', "201"], r.stdout + r.stderr)
        self.assertEqual(out[2:4], ['{"notes": ["hello"]}', "200"], r.stdout)
        # A header the sandbox sends itself is replaced, not forwarded.
        self.assertEqual(out[4:6], ['{"notes": ["hello"]}', "200"], r.stdout)
        self.assertNotIn(token, r.stdout + r.stderr + json.dumps(r.audit))
        allow = r.audit_where(event="http", verdict="allow", rule="notes")
        self.assertEqual(len(allow), 3, r.audit)

    def test_service_rejects_requests_without_the_token(self):
        # Through the proxy by address: allowed by policy, but no token.
        r = self.run_sh(self.curl(f"http://127.0.0.1:{self.port}/notes"))
        out = [line for line in r.stdout.split("\n") if line]
        self.assertEqual(out[-1], "401", r.stdout + r.stderr)
        # From the host, without pinfold.
        direct = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                 f"http://127.0.0.1:{self.port}/notes"], capture_output=True, text=True, timeout=10)
        self.assertEqual(direct.stdout, "401")

    def test_service_name_resolves_in_the_sandbox(self):
        # No --resolve, no /etc/hosts: the sandbox's resolver answers the
        # service's name with 127.0.0.1 (--service feeds the proxy's --host
        # table, which the DNS side answers from), for curl and for Python.
        url = f"http://notes:{self.port}/notes"
        r = self.run_sh(f"curl -sS --max-time 10 -o - -w '\\n%{{http_code}}\\n' '{url}'; "
                        f"{pftest.SANDBOX_PYTHON} -c \"import urllib.request as u; "
                        f"r = u.urlopen('{url}', timeout=10); print(r.status, r.read().decode().strip())\"")
        out = [line for line in r.stdout.split("\n") if line]
        self.assertEqual(out, ['{"notes": []}', "200", '200 {"notes": []}'], r.stdout + r.stderr)
        answered = [a for a in r.audit_where(event="dns", host="notes") if a["method"] == "A"]
        self.assertTrue(answered and all("answered from --host: 1" in a["reason"] for a in answered), r.audit)
        self.assertEqual(len(r.audit_where(event="http", verdict="allow", rule="notes")), 2, r.audit)
        self.assertNotIn(read(self.token_file).strip(), r.stdout + r.stderr + json.dumps(r.audit))

    def test_token_is_fresh_per_run(self):
        self.run_sh("true")
        first = read(self.token_file)
        self.run_sh("true")
        self.assertNotEqual(first, read(self.token_file))

    def test_bad_service_flag(self):
        r = self.pinfold(self.policy, ["true"], extra=["--service", "notes=10.0.0.1:80,token-file=/tmp/x"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("must be 127.0.0.1:PORT", r.stderr)


if __name__ == "__main__":
    pftest.main()
