"""Helpers for the credential tests: a loopback HTTPS server that records
what it received and answers with a digest of the Authorization header (never
the header itself, so a correct injection cannot leak back through the
response), and a provider file with a fresh random secret."""
import hashlib
import json
import os
import secrets
import textwrap
from http.server import BaseHTTPRequestHandler

import tlstest

SECRET_ENV = "PF_TEST_GH_SECRET"


def new_secret():
    return "ghp_" + secrets.token_hex(16)


def use_new_secret(test):
    """A fresh secret in SECRET_ENV, where the test's providers read it, for
    the length of TEST (a unittest.TestCase); the old value comes back after."""
    secret = new_secret()
    old = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = secret

    def restore():
        if old is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = old
    test.addCleanup(restore)
    return secret


def write_provider(directory, name="github", source=None, sandbox_env="GITHUB_TOKEN", scheme="Bearer"):
    path = os.path.join(directory, f"provider-{name}.yaml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(f"""\
            name: {name}
            type: header
            source: {source or "env:" + SECRET_ENV}
            sandbox_env: {sandbox_env}
            config:
              header: Authorization
              value_template: "{scheme} {{{{GITHUB_TOKEN}}}}"
              placeholder: "{scheme} __GITHUB_TOKEN__"
            """))
    return path


class EchoServer(tlstest.HttpsServer):
    """Records each request (method, path, headers as a list, body); replies
    {"auth_sha256": ..., "auth_count": n} so the client learns whether the
    real token arrived without ever holding it."""

    def __init__(self, ca, expected_value, **kw):
        outer_box = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self):
                outer = outer_box["server"]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                auths = self.headers.get_all("Authorization") or []
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": list(self.headers.items()), "body": body})
                payload = json.dumps({
                    "auth_sha256": [hashlib.sha256(a.encode()).hexdigest() for a in auths],
                    "auth_is_real": [a == expected_value for a in auths],
                }).encode() + b"\n"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _reply

        super().__init__(ca, handler=Handler, **kw)
        outer_box["server"] = self

    def saw(self, text):
        """Whether any received request carried `text` anywhere."""
        for r in self.requests:
            blob = r["path"] + "\n" + "\n".join(f"{k}: {v}" for k, v in r["headers"]) + "\n"
            if text in blob or text.encode() in r["body"]:
                return True
        return False
