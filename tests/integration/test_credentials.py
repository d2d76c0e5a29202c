#!/usr/bin/env python3
"""Credential injection (docs/credentials.md): the sandbox holds a
placeholder, the proxy puts the real token into the Authorization header of
requests a rule with `credentials:` allows. The loopback HTTPS echo server
answers with a digest of what it received, so the test can tell the token
arrived while the sandbox never holds it."""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import credtest  # noqa: E402
import pftest  # noqa: E402
import tlstest  # noqa: E402


class CredentialCase(pftest.PinfoldTestCase):
    scheme = "Bearer"

    def setUp(self):
        super().setUp()
        self.secret = credtest.use_new_secret(self)
        self.ca = tlstest.TestCA(self.tmp)
        self.up = credtest.EchoServer(self.ca, f"{self.scheme} {self.secret}")
        self.servers.append(self.up)
        self.port = self.up.port
        self.provider = credtest.write_provider(self.tmp, scheme=self.scheme)

    def policy(self, extra_rules=""):
        return self.write_policy(f"""
            name: creds
            rules:
              - name: github-api
                endpoint: https://localhost:{self.port}/api/**
                methods: [GET, POST]
                credentials: [github]
        """ + extra_rules)

    def run_sh(self, policy, script, extra=()):
        return self.pinfold(policy, ["sh", "-c", script],
                            extra=["--upstream-ca", self.ca.cert, "--provider", self.provider, *extra])

    def assert_no_secret_anywhere(self, r):
        with_audit = r.stdout + r.stderr + json.dumps(r.audit)
        self.assertNotIn(self.secret, with_audit)


class Injection(CredentialCase):
    def test_allowed_request_carries_the_real_token_the_sandbox_never_does(self):
        half = len(self.secret) // 2
        # The sandbox greps for the secret without ever holding it in one
        # string of its own argv: the halves are joined by the shell.
        script = f"""
            curl -sS --max-time 10 -H "Authorization: Bearer $GITHUB_TOKEN" '{self.up.url("/api/user")}'
            echo "sandbox-var=$GITHUB_TOKEN"
            echo ENVIRON; tr '\\0' '\\n' < /proc/self/environ
            echo ENV; env
            echo PROCS
            for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' ' ' < "$f" 2>/dev/null; echo; done
            A='{self.secret[:half]}'; B='{self.secret[half:]}'
            echo GREP
            timeout 120 grep -rlsF "$A$B" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev \\
                --exclude-dir=usr --exclude-dir=lib --exclude-dir=lib64 --exclude-dir=bin --exclude-dir=sbin
            echo "grep-exit=$?"
        """
        r = self.run_sh(self.policy(), script)
        lines = r.stdout.split("\n")
        answer = json.loads(lines[0])
        self.assertEqual(answer["auth_is_real"], [True], r.stderr)
        self.assertIn("sandbox-var=__GITHUB_TOKEN__", lines)
        self.assertIn("GITHUB_TOKEN=__GITHUB_TOKEN__", r.stdout.split("ENV\n")[1].split("\n"))
        # The script's own text is in the PROCS part: the last marker is the output.
        grep = r.stdout.rsplit("GREP\n", 1)[1].strip().split("\n")
        # No file listed; 1 is no match, 2 also says some files were unreadable.
        self.assertIn(grep, (["grep-exit=1"], ["grep-exit=2"]), r.stdout)
        self.assert_no_secret_anywhere(r)
        # The server got exactly one Authorization, the real one.
        auths = [v for k, v in self.up.requests[0]["headers"] if k.lower() == "authorization"]
        self.assertEqual(auths, [f"Bearer {self.secret}"])
        allow = r.audit_where(event="https", verdict="allow")
        self.assertEqual([(a["rule"], a["path"]) for a in allow], [("github-api", "/api/user")], r.audit)

    def test_secret_from_file_and_header_name_case(self):
        secret_file = os.path.join(self.tmp, "token")
        with open(secret_file, "w") as f:
            f.write(self.secret + "\n")
        os.chmod(secret_file, 0o600)
        self.provider = credtest.write_provider(self.tmp, source="file:" + secret_file)
        os.environ.pop(credtest.SECRET_ENV)
        r = self.run_sh(self.policy(), f"curl -sS --max-time 10 -H 'authorization: Bearer __GITHUB_TOKEN__' "
                                       f"'{self.up.url('/api/x')}'")
        self.assertEqual(json.loads(r.stdout)["auth_is_real"], [True], r.stderr)
        self.assert_no_secret_anywhere(r)

    def test_request_without_placeholder_is_forwarded_unchanged(self):
        r = self.run_sh(self.policy(), f"curl -sS --max-time 10 '{self.up.url('/api/x')}'")
        self.assertEqual(json.loads(r.stdout)["auth_is_real"], [], r.stderr)

    def test_rule_with_credentials_forces_interception(self):
        # An allow-all rule would pass TLS through; with credentials it cannot.
        policy = self.write_policy(f"""
            name: creds
            rules:
              - endpoint: https://localhost:{self.port}/**
                credentials: [github]
        """)
        r = self.run_sh(policy, f"curl -sS --max-time 10 -H \"Authorization: Bearer $GITHUB_TOKEN\" "
                                f"'{self.up.url('/anything')}'")
        self.assertEqual(json.loads(r.stdout)["auth_is_real"], [True], r.stderr)
        self.assertEqual(len(r.audit_where(event="https", verdict="allow")), 1, r.audit)


class LoadErrors(CredentialCase):
    def run_bad(self, policy, extra):
        return self.pinfold(policy, ["true"], extra=["--upstream-ca", self.ca.cert, *extra])

    def test_bad_provider_names_file_line_field(self):
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("name: github\ntype: header\nconfig:\n  header: Authorization\n"
                    "  value_template: \"Bearer TOKEN\"\n  placeholder: \"Bearer __X__\"\n")
        r = self.run_bad(self.policy(), ["--provider", bad])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"{bad}:5:19: field 'config.value_template'", r.stderr)
        self.assertEqual(self.up.requests, [])

    def test_unloaded_provider_and_missing_secret(self):
        r = self.run_bad(self.policy(), [])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("field 'rules[0].credentials[0]': no provider 'github'", r.stderr)
        os.environ.pop(credtest.SECRET_ENV)
        r = self.run_bad(self.policy(), ["--provider", self.provider])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is not set in pinfold's environment", r.stderr)

    def test_env_flag_cannot_pass_the_secret_in(self):
        r = self.run_bad(self.policy(), ["--provider", self.provider, "--env", "LEAK=" + self.secret])
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("would carry the secret of provider 'github'", r.stderr)
        self.assertNotIn(self.secret, r.stderr + r.stdout)


class GhWalkthrough(CredentialCase):
    """docs/credentials.md: gh sends `Authorization: token <TOKEN>`."""
    scheme = "token"

    def test_gh_api(self):
        gh = shutil.which("gh")
        self.assertIsNotNone(gh, "gh is a test dependency")
        policy = self.write_policy(f"""
            name: creds
            rules:
              - name: github-api
                endpoint: https://localhost:{self.port}/api/v3/**
                methods: [GET]
                credentials: [github]
        """)
        script = (f"GH_HOST=localhost:{self.port} GH_ENTERPRISE_TOKEN=$GITHUB_TOKEN GH_CONFIG_DIR=/tmp/gh "
                  f"{gh} api /user")
        r = self.run_sh(policy, script)
        self.assertEqual(json.loads(r.stdout)["auth_is_real"], [True], r.stderr)
        self.assert_no_secret_anywhere(r)


if __name__ == "__main__":
    pftest.main()
