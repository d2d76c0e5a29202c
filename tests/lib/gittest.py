"""A loopback git smart-HTTP server over TLS for the credential tests:
`git http-backend` (CGI) behind a small Python handler that demands HTTP
Basic auth and records, per request, only whether the credentials were the
expected ones (never the header itself)."""
import base64
import os
import subprocess
from http.server import BaseHTTPRequestHandler

import tlstest

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}


def make_repo(root, name="o/r.git", text="hello from git\n"):
    """A bare repository `root/name` with one commit holding README."""
    work = os.path.join(root, "work-" + name.replace("/", "-"))
    bare = os.path.join(root, name)
    os.makedirs(work)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q", work], check=True, env=GIT_ENV)
    with open(os.path.join(work, "README"), "w") as f:
        f.write(text)
    subprocess.run(git + ["-C", work, "add", "README"], check=True, env=GIT_ENV)
    subprocess.run(git + ["-C", work, "commit", "-q", "-m", "first"], check=True, env=GIT_ENV)
    subprocess.run(git + ["clone", "-q", "--bare", work, bare], check=True, env=GIT_ENV)
    head = subprocess.run(["git", "-C", bare, "rev-parse", "HEAD"], check=True, env=GIT_ENV,
                          capture_output=True, text=True).stdout.strip()
    return bare, head


class GitServer(tlstest.HttpsServer):
    """Serves the repositories under `root` read-only (upload-pack) to
    requests carrying `Authorization: Basic base64(user:password)`; anything
    else gets 401 with a Basic challenge, as GitHub does."""

    def __init__(self, ca, root, user, password, **kw):
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        outer_box = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, headers, body):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self):
                outer = outer_box["server"]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                auths = self.headers.get_all("Authorization") or []
                authorized = auths == [expected]
                outer.requests.append({"method": self.command, "path": self.path, "authorized": authorized,
                                       "auth_count": len(auths),
                                       "headers": [(k, v) for k, v in self.headers.items()], "body": body})
                if not authorized:
                    self._send(401, [("WWW-Authenticate", 'Basic realm="git"')], b"")
                    return
                path, _, query = self.path.partition("?")
                env = dict(GIT_ENV, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                           QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER=user,
                           REMOTE_ADDR="127.0.0.1", CONTENT_TYPE=self.headers.get("Content-Type", ""),
                           CONTENT_LENGTH=str(len(body)), GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                           HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""))
                out = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True, timeout=30).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.split(b"\r\n"):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self._send(status, headers, payload)

            do_GET = do_POST = _serve

        super().__init__(ca, handler=Handler, **kw)
        outer_box["server"] = self

    def saw(self, text):
        for r in self.requests:
            blob = r["path"] + "\n" + "\n".join(f"{k}: {v}" for k, v in r["headers"])
            if text in blob or text.encode() in r["body"]:
                return True
        return False
