#!/usr/bin/env python3
"""Providers listed by an agent profile (`providers:` in the policy, paths
relative to it), the start-up refusals (a secret too short, credentials on
plaintext http:// to a non-loopback host, a profile provider whose variable
is missing) and `pinfold check`'s per-rule credential lines
(docs/credentials.md)."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import credtest  # noqa: E402
import pftest  # noqa: E402
import tlstest  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Profiles(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.secret = credtest.new_secret()
        self.old_env = {k: os.environ.get(k) for k in (credtest.SECRET_ENV, "GITHUB_TOKEN")}
        os.environ[credtest.SECRET_ENV] = self.secret
        os.makedirs(os.path.join(self.tmp, "providers"))
        credtest.write_provider(os.path.join(self.tmp, "providers"))   # providers/provider-github.yaml

    def tearDown(self):
        for k, v in self.old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        super().tearDown()

    def profile(self, endpoint, extra_rules=""):
        return self.write_policy(f"""
            name: profile
            providers:
              - providers/provider-github.yaml
            rules:
              - name: api
                endpoint: {endpoint}
                methods: [GET]
                credentials: [github]
        """ + extra_rules)

    def refused_at_start(self, policy, expected):
        r = self.pinfold(policy, ["true"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(expected, r.stderr)
        self.assertEqual(r.audit, [])
        self.assertNotIn(self.secret, r.stdout + r.stderr)
        return r

    def test_profile_provider_injects_without_the_flag(self):
        ca = tlstest.TestCA(self.tmp)
        up = credtest.EchoServer(ca, f"Bearer {self.secret}")
        self.servers.append(up)
        policy = self.profile(f"https://localhost:{up.port}/api/**")
        r = self.pinfold(policy, ["sh", "-c", f'echo "var=$GITHUB_TOKEN"; curl -sS --max-time 10 '
                                              f'-H "Authorization: Bearer $GITHUB_TOKEN" {up.url("/api/x")}'],
                         extra=["--upstream-ca", ca.cert])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("var=__GITHUB_TOKEN__", r.stdout)
        answer = json.loads(r.stdout.split("\n")[1])
        self.assertEqual(answer["auth_is_real"], [True], r.stdout + r.stderr)
        self.assertNotIn(self.secret, r.stdout + r.stderr + json.dumps(r.audit))

    def test_profile_provider_with_its_variable_missing(self):
        del os.environ[credtest.SECRET_ENV]
        policy = self.profile("https://api.example.com/**")
        self.refused_at_start(policy, f"{policy}:4:5: field 'providers[0]'")
        self.refused_at_start(policy, f"source env:{credtest.SECRET_ENV}: the variable is not set")

    def test_profile_provider_file_missing_or_broken(self):
        policy = self.write_policy("""
            name: profile
            providers: [providers/none.yaml]
            rules:
              - endpoint: https://api.example.com/**
        """)
        self.refused_at_start(policy, f"{policy}:3:13: field 'providers[0]': cannot open provider file")
        with open(os.path.join(self.tmp, "providers", "provider-github.yaml"), "a") as f:
            f.write("colour: blue\n")
        self.refused_at_start(self.profile("https://api.example.com/**"), "field 'colour': unknown key")

    def test_secret_shorter_than_the_minimum(self):
        os.environ[credtest.SECRET_ENV] = "x"
        self.refused_at_start(self.profile("https://api.example.com/**"),
                              "the secret is 1 character(s) long; at least 8 are needed")

    def test_credentials_on_plaintext_http(self):
        policy = self.profile("http://api.example.com/**")
        self.refused_at_start(policy, f"{policy}:6: field 'rules[0].credentials': credentials on plaintext http:// "
                                      "would send the secret in cleartext to api.example.com")
        # To a loopback address the secret never leaves the machine: allowed.
        up = self.server()
        r = self.pinfold(self.profile(f"http://127.0.0.1:{up.port}/**"),
                         ["sh", "-c", f'curl -sS --max-time 10 -H "Authorization: Bearer $GITHUB_TOKEN" {up.url("/x")}'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(up.requests[0]["headers"]["Authorization"], f"Bearer {self.secret}")

    def test_check_lists_what_each_rule_may_inject(self):
        policy = self.profile("https://api.example.com/**", """
              - name: plain
                endpoint: http://plain.example.com/**
                credentials: [github]
              - name: unknown
                endpoint: https://other.example.com/**
                credentials: [nobody]
        """)
        r = subprocess.run([pftest.PINFOLD, "check", policy], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1. api may inject: github (header: Authorization: Bearer __GITHUB_TOKEN__, "
                      f"secret from env:{credtest.SECRET_ENV})", r.stdout)
        self.assertIn(f"problem: {policy}:11: field 'rules[1].credentials': credentials on plaintext http://",
                      r.stdout)
        self.assertIn("provider 'nobody' is not listed under providers:", r.stdout)
        self.assertNotIn(self.secret, r.stdout + r.stderr)
        broken = self.write_policy("name: b\nproviders: [providers/none.yaml]\nrules:\n"
                                   "  - endpoint: https://a.example/**\n", name="broken.yaml")
        r = subprocess.run([pftest.PINFOLD, "check", broken], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"error: {broken}:2:13: field 'providers[0]': cannot open provider file", r.stdout)

    def test_shipped_agent_policies_need_only_the_token(self):
        os.environ["GITHUB_TOKEN"] = self.secret
        for name in ("github-read", "triage", "review", "code", "fix"):
            policy = os.path.join(REPO, "policies", f"{name}.yaml")
            r = self.pinfold(policy, ["sh", "-c", 'echo "var=$GITHUB_TOKEN"'])
            self.assertEqual(r.returncode, 0, name + ": " + r.stderr)
            self.assertIn("var=__GITHUB_TOKEN__", r.stdout, name)
            self.assertNotIn(self.secret, r.stdout + r.stderr)
        del os.environ["GITHUB_TOKEN"]
        r = self.pinfold(os.path.join(REPO, "policies", "triage.yaml"), ["true"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("triage.yaml:13:5: field 'providers[0]': ", r.stderr)
        self.assertIn("GITHUB_TOKEN: the variable is not set", r.stderr)


if __name__ == "__main__":
    pftest.main()
