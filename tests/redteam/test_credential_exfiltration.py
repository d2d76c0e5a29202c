#!/usr/bin/env python3
"""Ways to get a credential out of the proxy: the placeholder sent to a host
whose rule does not list the provider, in the URL, in the body (also split
across reads and TLS records), in another header, twice; the real secret
pasted into a request. Each must be denied, audited as possible credential
exfiltration, and the server must never see the real token."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import credtest  # noqa: E402
import pftest  # noqa: E402
import tlstest  # noqa: E402

EXFIL = "possible credential exfiltration"


def curl(url, *args):
    return f"curl -sS --max-time 10 -o - -w '\\n%{{http_code}}\\n' {' '.join(args)} '{url}'"


class Exfiltration(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.secret = credtest.use_new_secret(self)
        self.ca = tlstest.TestCA(self.tmp)
        self.up = credtest.EchoServer(self.ca, f"Bearer {self.secret}")
        self.other = credtest.EchoServer(self.ca, f"Bearer {self.secret}")
        self.servers += [self.up, self.other]
        self.provider = credtest.write_provider(self.tmp)
        self.policy = self.write_policy(f"""
            name: exfil
            rules:
              - name: github-api
                endpoint: https://localhost:{self.up.port}/api/**
                methods: [GET, POST]
                credentials: [github]
              - name: other-host
                endpoint: https://localhost:{self.other.port}/**
                methods: [GET, POST]
              - name: same-host-no-credentials
                endpoint: https://localhost:{self.up.port}/public/**
        """)

    def run_sh(self, script):
        return self.pinfold(self.policy, ["sh", "-c", script],
                            extra=["--upstream-ca", self.ca.cert, "--provider", self.provider])

    def assert_refused(self, r, status="403", servers=None):
        out = [line for line in r.stdout.split("\n") if line]
        self.assertEqual(out[-1], status, r.stdout + r.stderr)
        denied = [a for a in r.audit if a.get("verdict") == "deny" and EXFIL in a.get("reason", "")]
        self.assertEqual(len(denied), 1, r.audit)
        for s in servers or (self.up, self.other):
            self.assertFalse(s.saw(self.secret), s.requests)
        self.assertNotIn(self.secret, r.stdout + r.stderr + json.dumps(r.audit))
        return denied[0]

    def test_placeholder_to_another_host(self):
        r = self.run_sh(curl(self.other.url("/x"), '-H "Authorization: Bearer $GITHUB_TOKEN"'))
        rec = self.assert_refused(r)
        self.assertEqual(rec["rule"], "other-host")
        self.assertEqual(self.other.requests, [])

    def test_placeholder_to_a_path_whose_rule_has_no_credentials(self):
        r = self.run_sh(curl(self.up.url("/public/x"), '-H "Authorization: Bearer $GITHUB_TOKEN"'))
        self.assert_refused(r)
        self.assertEqual(self.up.requests, [])

    def test_placeholder_to_a_denied_request(self):
        r = self.run_sh(curl(self.up.url("/admin"), '-H "Authorization: Bearer $GITHUB_TOKEN"'))
        self.assert_refused(r)

    def test_placeholder_in_the_url(self):
        r = self.run_sh(curl(self.up.url("/api/x?token=__GITHUB_TOKEN__")))
        rec = self.assert_refused(r)
        self.assertNotIn("__GITHUB_TOKEN__", json.dumps(rec))
        self.assertEqual(self.up.requests, [])

    def test_placeholder_in_another_header(self):
        r = self.run_sh(curl(self.up.url("/api/x"), '-H "X-Token: $GITHUB_TOKEN"'))
        self.assert_refused(r)
        self.assertEqual(self.up.requests, [])

    def test_two_authorization_headers(self):
        # curl keeps both when the second differs in case.
        r = self.run_sh(curl(self.up.url("/api/x"), '-H "Authorization: Bearer $GITHUB_TOKEN"',
                             '-H "authorization: Bearer $GITHUB_TOKEN"'))
        self.assert_refused(r)
        self.assertEqual(self.up.requests, [])

    def test_placeholder_in_the_body_split_across_reads_and_records(self):
        # 100 000 bytes of padding put the token across TLS records and reads.
        script = (f"/usr/bin/python3 -c 'import sys; sys.stdout.write(\"a\" * 99990 + \"__GITHUB_TOKEN__\" + "
                  f"\"b\" * 5000)' > /tmp/body; "
                  + curl(self.up.url("/api/upload"), "-X POST", "--data-binary @/tmp/body",
                         '-H "Authorization: Bearer $GITHUB_TOKEN"'))
        r = self.run_sh(script)
        out = [line for line in r.stdout.split("\n") if line]
        # The head went upstream before the body: the proxy cuts the
        # connection (curl reports 000) or answers 403 when nothing was sent.
        self.assertIn(out[-1], ("403", "000"), r.stdout + r.stderr)
        denied = [a for a in r.audit if a.get("verdict") == "deny" and EXFIL in a.get("reason", "")]
        self.assertEqual(len(denied), 1, r.audit)
        self.assertIn("request body", denied[0]["reason"])
        # The head was allowed (and carried the real token, as the rule
        # says); the body was cut before the placeholder was complete.
        for req in self.up.requests:
            self.assertNotIn(b"__GITHUB_TOKEN__", req["body"])
            self.assertLess(len(req["body"]), 99990 + 16)
        self.assertNotIn(self.secret, r.stdout + r.stderr + json.dumps(r.audit))

    def test_real_secret_pasted_into_a_request(self):
        # The sandbox cannot know it; if it ever appears, it is refused.
        r = self.run_sh(f"S='{self.secret}'; " + curl(self.up.url("/api/x"), '-H "Authorization: Bearer $S"'))
        denied = [a for a in r.audit if a.get("verdict") == "deny" and EXFIL in a.get("reason", "")]
        self.assertEqual(len(denied), 1, r.audit)
        self.assertIn("secret", denied[0]["reason"])
        self.assertEqual(self.up.requests, [])
        self.assertNotIn(self.secret, json.dumps(r.audit) + r.stderr)


if __name__ == "__main__":
    pftest.main()
