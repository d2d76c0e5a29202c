#!/usr/bin/env python3
"""git over HTTPS with a `basic` provider (docs/credentials.md): real `git
ls-remote` and `git clone` in the sandbox against `git http-backend` on
loopback over TLS. git sends `Authorization: Basic
base64(x-access-token:__GITHUB_TOKEN__)` from a credential helper that reads
the placeholder variable; the proxy decodes it, matches the placeholder
exactly and re-encodes it with the real token, which the server demands.
The red-team half: the placeholder under another user name, on a rule
without the provider, or to another host is refused and audited, and no
server ever sees the secret."""
import json
import os
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gittest  # noqa: E402
import pftest  # noqa: E402
import tlstest  # noqa: E402

SECRET_ENV = "PF_TEST_GIT_SECRET"
EXFIL = "possible credential exfiltration"
HELPER = "!f() { echo username=%s; echo \"password=$GITHUB_TOKEN\"; }; f"


class GitBasicAuth(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.secret = "ghp_" + os.urandom(16).hex()
        self.old_env = os.environ.get(SECRET_ENV)
        os.environ[SECRET_ENV] = self.secret
        self.ca = tlstest.TestCA(self.tmp)
        self.repos = os.path.join(self.tmp, "repos")
        _, self.head = gittest.make_repo(self.repos)
        self.git = gittest.GitServer(self.ca, self.repos, "x-access-token", self.secret)
        self.other = gittest.GitServer(self.ca, self.repos, "x-access-token", self.secret)
        self.servers += [self.git, self.other]
        os.makedirs(os.path.join(self.tmp, "providers"))
        with open(os.path.join(self.tmp, "providers", "git.yaml"), "w") as f:
            f.write(textwrap.dedent(f"""\
                name: github-git
                type: basic
                source: env:{SECRET_ENV}
                sandbox_env: GITHUB_TOKEN
                config:
                  username: x-access-token
                  password_template: "{{{{GITHUB_TOKEN}}}}"
                  placeholder: "__GITHUB_TOKEN__"
                """))
        # The provider comes from the profile (providers:), not a flag.
        self.policy = self.write_policy(f"""
            name: git
            providers: [providers/git.yaml]
            rules:
              - name: git-discover
                endpoint: https://localhost:{self.git.port}/*/*.git/info/refs
                methods: [GET]
                credentials: [github-git]
              - name: git-fetch
                endpoint: https://localhost:{self.git.port}/*/*.git/git-upload-pack
                methods: [POST]
                credentials: [github-git]
              - name: other-git
                endpoint: https://localhost:{self.other.port}/**
                methods: [GET, POST]
        """)

    def tearDown(self):
        if self.old_env is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = self.old_env
        super().tearDown()

    def git_sh(self, script):
        return self.pinfold(self.policy, ["sh", "-c", script], extra=["--upstream-ca", self.ca.cert])

    def git_cmd(self, user="x-access-token"):
        return (f"git -c 'credential.helper={HELPER % user}' -c credential.interactive=false "
                "-c core.askPass=/bin/false")

    def assert_no_secret(self, r):
        for s in (self.git, self.other):
            self.assertFalse(s.saw(self.secret), s.requests)
        self.assertNotIn(self.secret, r.stdout + r.stderr + json.dumps(r.audit))

    def test_ls_remote_and_clone_get_the_real_token(self):
        url = self.git.url("/o/r.git")
        r = self.git_sh(f"""
            export HOME=/tmp GIT_TERMINAL_PROMPT=0
            echo "var=$GITHUB_TOKEN"
            {self.git_cmd()} ls-remote '{url}' 2>&1
            {self.git_cmd()} clone -q '{url}' /tmp/clone 2>&1 && cat /tmp/clone/README
            echo "clone-exit=$?"
        """)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("var=__GITHUB_TOKEN__", r.stdout)
        self.assertIn(f"{self.head}\tHEAD", r.stdout, r.stdout + r.stderr)
        self.assertIn("hello from git", r.stdout)
        self.assertIn("clone-exit=0", r.stdout)
        # The server saw the real credentials (and, first, git's anonymous try).
        authorized = [q for q in self.git.requests if q["authorized"]]
        self.assertGreaterEqual(len(authorized), 3, self.git.requests)
        self.assertTrue(any("git-upload-pack" in q["path"] and q["method"] == "POST" for q in authorized))
        allowed = r.audit_where(verdict="allow", rule="git-fetch")
        self.assertTrue(allowed, r.audit)
        self.assert_no_secret(r)

    def test_placeholder_under_another_user_name_is_refused(self):
        r = self.git_sh(f"export HOME=/tmp GIT_TERMINAL_PROMPT=0; "
                        f"{self.git_cmd('evil')} ls-remote '{self.git.url('/o/r.git')}' 2>&1; echo exit=$?")
        self.assertNotIn("exit=0", r.stdout)
        denied = [a for a in r.audit if a.get("verdict") == "deny" and EXFIL in a.get("reason", "")]
        self.assertTrue(denied, r.audit)
        self.assertIn("provider 'github-git'", denied[0]["reason"])
        self.assertFalse(any(q["authorized"] for q in self.git.requests), self.git.requests)
        self.assert_no_secret(r)

    def test_placeholder_to_a_host_whose_rule_has_no_credentials(self):
        r = self.git_sh(f"export HOME=/tmp GIT_TERMINAL_PROMPT=0; "
                        f"{self.git_cmd()} ls-remote '{self.other.url('/o/r.git')}' 2>&1; echo exit=$?")
        self.assertNotIn("exit=0", r.stdout)
        denied = [a for a in r.audit if a.get("verdict") == "deny" and EXFIL in a.get("reason", "")]
        self.assertEqual(len(denied), 1, r.audit)
        self.assertEqual(denied[0]["rule"], "other-git")
        # Only git's anonymous first request arrived; never a credential.
        self.assertTrue(all(q["auth_count"] == 0 for q in self.other.requests), self.other.requests)
        self.assert_no_secret(r)


if __name__ == "__main__":
    pftest.main()
