#!/usr/bin/env python3
"""HTTPS through pinfold: real clients (curl, python3 urllib, node fetch, git,
gh) run inside `pinfold run` with no TLS flags and trust the run CA through
the injected bundle; upstream servers on loopback use a CA the test makes,
given to the proxy with --upstream-ca."""
import json
import os
import shutil
import subprocess
import sys
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402
import tlstest  # noqa: E402


def curl(url, *args):
    return f"curl -sS --max-time 10 -o - -w '\\n%{{http_code}}\\n' {' '.join(args)} '{url}'"


class TlsCase(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.ca = tlstest.TestCA(self.tmp)
        self.up = tlstest.HttpsServer(self.ca)
        self.servers.append(self.up)
        self.port = self.up.port

    def run_sh(self, policy, script, extra=()):
        return self.pinfold(policy, ["sh", "-c", script], extra=["--upstream-ca", self.ca.cert, *extra])

    def policy_items(self):
        return self.write_policy(f"""
            name: tls
            rules:
              - name: items
                endpoint: https://localhost:{self.port}/items/*
                methods: [GET]
        """)

    def assert_allowed_then_denied(self, r, allowed_path="/items/1", denied_path="/admin"):
        https = r.audit_where(event="https")
        self.assertEqual([(x["verdict"], x["path"], x["status"]) for x in https],
                         [("allow", allowed_path, 200), ("deny", denied_path, 403)], r.audit)
        self.assertEqual([q["path"] for q in self.up.requests], [allowed_path])


class Interception(TlsCase):
    def test_curl(self):
        r = self.run_sh(self.policy_items(), curl(self.up.url("/items/1")) + ";" + curl(self.up.url("/admin")))
        out = [line for line in r.stdout.split("\n") if line]
        self.assertEqual(out[0:2], ["hello from upstream", "200"], r.stderr)
        self.assertEqual(out[3], "403", r.stdout)
        doc = json.loads(out[2])
        self.assertEqual((doc["error"], doc["reason"]), ("denied", "no rule matched"))
        self.assert_allowed_then_denied(r)
        # The host was intercepted because the rule restricts path and method.
        self.assertEqual(r.audit_where(event="https")[0]["rule"], "items")

    def test_python_urllib(self):
        code = f"""
import urllib.request, urllib.error
print(urllib.request.urlopen("{self.up.url('/items/1')}", timeout=10).read().decode().strip())
try:
    urllib.request.urlopen("{self.up.url('/admin')}", timeout=10)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
"""
        # Debian's python3: the sandbox's uid cannot read a home-directory one.
        r = self.run_sh(self.policy_items(), f"/usr/bin/python3 -c '{code}'")
        lines = r.stdout.strip().split("\n")
        self.assertEqual(lines[0], "hello from upstream", r.stderr)
        self.assertTrue(lines[1].startswith("403 "), r.stdout)
        self.assert_allowed_then_denied(r)

    def test_node_fetch(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is a test dependency")
        code = (f"(async () => {{ for (const p of ['/items/1', '/admin']) {{ "
                f"const r = await fetch('https://localhost:{self.port}' + p); "
                f"console.log(r.status, (await r.text()).trim()); }} }})()"
                f".catch(e => {{ console.log('ERR', e.cause || e); process.exit(3); }});")
        r = self.run_sh(self.policy_items(), f"{node} -e \"{code}\"")
        lines = r.stdout.strip().split("\n")
        self.assertEqual(lines[0], "200 hello from upstream", r.stdout + r.stderr)
        self.assertTrue(lines[1].startswith("403 "), r.stdout)
        self.assert_allowed_then_denied(r)

    def test_gh_api(self):
        # gh treats any host but github.com as GitHub Enterprise: its REST
        # API is https://HOST/api/v3/. GH_HOST may carry the port.
        policy = self.write_policy(f"""
            name: gh
            rules:
              - name: read-repo
                endpoint: https://localhost:{self.port}/api/v3/repos/*/*
                methods: [GET]
        """)
        env = (f"GH_HOST=localhost:{self.port} GH_ENTERPRISE_TOKEN=test-token GH_CONFIG_DIR=/tmp/gh "
               f"GH_NO_UPDATE_NOTIFIER=1 GH_PROMPT_DISABLED=1")
        r = self.run_sh(policy, f"{env} gh api /repos/o/r; echo rc=$?; {env} gh api /repos/o/r/collaborators; "
                                f"echo rc=$?")
        self.assertIn("hello from upstream\nrc=0", r.stdout, r.stderr)
        self.assertIn("rc=1", r.stdout, r.stdout + r.stderr)
        self.assertIn("HTTP 403", r.stderr + r.stdout)
        self.assert_allowed_then_denied(r, "/api/v3/repos/o/r", "/api/v3/repos/o/r/collaborators")

    def test_upstream_with_wrong_name_is_502(self):
        wrong = tlstest.HttpsServer(self.ca, names=("wrong.example",))
        self.servers.append(wrong)
        policy = self.write_policy(f"""
            name: wrong
            rules:
              - endpoint: https://localhost:{wrong.port}/**
                tls: intercept
        """)
        r = self.run_sh(policy, curl(f"https://localhost:{wrong.port}/x"))
        body, code = r.stdout.strip().rsplit("\n", 1)
        self.assertEqual(code, "502", r.stdout + r.stderr)
        doc = json.loads(body)
        self.assertEqual(doc["error"], "bad_gateway")
        self.assertIn("certificate verification failed", doc["reason"])
        self.assertEqual(wrong.requests, [])
        rec = r.audit_where(event="https", status=502)
        self.assertEqual(len(rec), 1, r.audit)
        self.assertIn("hostname mismatch", rec[0]["reason"])


class PassThrough(TlsCase):
    def test_client_sees_the_upstreams_own_certificate(self):
        policy = self.write_policy(f"""
            name: pass
            rules:
              - name: everything
                endpoint: https://localhost:{self.port}/**
        """)
        r = self.run_sh(policy, f"openssl s_client -connect localhost:{self.port} -servername localhost "
                                f"</dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256")
        self.assertEqual(r.stdout.strip().split("=", 1)[-1], self.up.fingerprint(), r.stderr)
        rec = r.audit_where(event="tls", verdict="allow")
        self.assertEqual(len(rec), 1, r.audit)
        self.assertEqual(rec[0]["rule"], "everything")
        self.assertIn("pass-through", rec[0]["reason"])

    def test_curl_through_passthrough_needs_the_upstream_ca(self):
        policy = self.write_policy(f"""
            name: pass
            rules:
              - endpoint: https://localhost:{self.port}/**
                tls: passthrough
        """)
        # The injected bundle holds the run CA, not the test CA: a client
        # that gets the real server's certificate cannot verify it.
        r = self.run_sh(policy, curl(self.up.url("/a")) + "; echo; " + curl(self.up.url("/a"), "-k"))
        self.assertIn("hello from upstream", r.stdout, r.stderr)
        self.assertEqual([q["path"] for q in self.up.requests], ["/a"])

    def test_check_reports_the_mode_per_host(self):
        policy = self.write_policy("""
            name: modes
            rules:
              - endpoint: https://api.example.com/repos/**
                methods: [GET]
              - endpoint: https://files.example.com/**
              - endpoint: https://pinned.example.com/**
                tls: intercept
        """)
        out = subprocess.run([pftest.PINFOLD, "check", policy], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("tls api.example.com:443: intercept", out.stdout)
        self.assertIn("tls files.example.com:443: passthrough", out.stdout)
        self.assertIn("tls pinned.example.com:443: intercept", out.stdout)


class GitBackend(BaseHTTPRequestHandler):
    """git-http-backend behind the HTTPS server (smart HTTP, CGI)."""
    protocol_version = "HTTP/1.1"
    root = None
    seen = None

    def log_message(self, *args):
        pass

    def _cgi(self):
        path, _, query = self.path.partition("?")
        type(self).seen.append(path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {"GIT_PROJECT_ROOT": self.root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "PATH": os.environ["PATH"]}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=30).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _cgi


class Git(TlsCase):
    def test_git_clone_and_fetch(self):
        root = os.path.join(self.tmp, "repos")
        work = os.path.join(self.tmp, "work")
        for cmd in (["git", "init", "-q", "-b", "main", work],
                    ["git", "-C", work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                     "--allow-empty", "-m", "first"],
                    ["git", "clone", "-q", "--bare", work, os.path.join(root, "demo.git")],
                    ["git", "clone", "-q", "--bare", work, os.path.join(root, "secret.git")]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        handler = type("Handler", (GitBackend,), {"root": root, "seen": []})
        server = tlstest.HttpsServer(self.ca, handler=handler)
        self.servers.append(server)
        policy = self.write_policy(f"""
            name: git
            rules:
              - name: clone-demo
                endpoint: https://localhost:{server.port}/demo.git/info/refs
                methods: [GET]
              - name: fetch-demo
                endpoint: https://localhost:{server.port}/demo.git/git-upload-pack
                methods: [POST]
        """)
        url = f"https://localhost:{server.port}"
        r = self.run_sh(policy, f"cd /tmp && git clone -q {url}/demo.git d && git -C d fetch -q && "
                                f"git -C d log --format=%s && echo cloned; "
                                f"git clone -q {url}/secret.git s; echo rc=$?")
        self.assertIn("first\ncloned", r.stdout, r.stderr)
        self.assertIn("rc=128", r.stdout)
        self.assertIn("403", r.stderr)
        allowed = r.audit_where(event="https", verdict="allow")
        self.assertGreaterEqual(len(allowed), 3, r.audit)   # refs, upload-pack, fetch
        denied = r.audit_where(event="https", verdict="deny")
        self.assertEqual([d["path"] for d in denied], ["/secret.git/info/refs"], r.audit)
        self.assertNotIn("/secret.git/info/refs", handler.seen)


class CaKey(TlsCase):
    def test_ca_key_is_not_readable_from_the_sandbox(self):
        # The key exists only in the proxy's memory: no file anywhere holds
        # it, and the proxy's /proc is out of the sandbox's reach (other uid,
        # other PID namespace).
        # Whole PEM header lines in text files: key files, not sources or
        # binaries that merely name them.
        script = ("grep -rlxI -e '-----BEGIN PRIVATE KEY-----' -e '-----BEGIN EC PRIVATE KEY-----' "
                  "/run/pinfold-trust /tmp 2>/dev/null; echo grep=done; "
                  "for p in $(pgrep -x pinfold-proxy) $(ls /proc | grep -E '^[0-9]+$'); do "
                  "  if [ \"$(cat /proc/$p/comm 2>/dev/null)\" = pinfold-proxy ]; then "
                  "    cat /proc/$p/environ >/dev/null 2>&1 && echo LEAK-environ; "
                  "    dd if=/proc/$p/mem bs=1 count=1 2>/dev/null && echo LEAK-mem; fi; done; "
                  "ls /run/pinfold-trust/*/; echo listed")
        r = self.run_sh(self.policy_items(), script)
        self.assertIn("grep=done", r.stdout, r.stderr)
        self.assertNotIn("LEAK", r.stdout)
        self.assertIn("ca-bundle.pem\nrun-ca.pem\nlisted", r.stdout)
        self.assertEqual(r.stdout.split("grep=done")[0].strip(), "")
        # From the host too: the bundle directory holds certificates only.
        for root, _, files in os.walk("/run/pinfold-trust"):
            for f in files:
                with open(os.path.join(root, f)) as fh:
                    self.assertNotIn("PRIVATE KEY", fh.read())


if __name__ == "__main__":
    pftest.main()
