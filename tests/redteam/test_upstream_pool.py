#!/usr/bin/env python3
"""Attacks on the upstream keep-alive pool (proxy/upstream_pool.hpp). A
pooled proxy -> origin connection must never carry a request of another
rule, executable or credential; a denied request reaches no upstream, pooled
or not; an origin that smuggles a second response after a framed one, or
ends its body by closing, never gets its connection pooled, and the stray
bytes reach no later client; an idle connection the origin closed is
retried transparently for a GET, while a POST never rides on a pooled
connection; a body sent after a HEAD response is a stray response too.
Every case is checked on the origin's side (which connection carried which
request) and in the audit ("upstream": new/reused/retry)."""
import os
import shlex
import sys
import textwrap
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import credtest  # noqa: E402
import pftest  # noqa: E402

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


class ScriptedOrigin(pftest.RawOrigin):
    """A keep-alive HTTP/1.1 origin that records which of its connections
    carried each request: log holds (connection number, request line,
    headers lowercased). answer(conn_no, index, line) gives the bytes to
    send (None: close without answering); the default is a framed 200."""

    def __init__(self, answer=None):
        self.lock = threading.Lock()
        self.connections = 0
        self.log = []
        self.answer = answer or (lambda conn_no, index, line: OK)
        super().__init__()

    def serve(self, conn):
        with self.lock:
            self.connections += 1
            number = self.connections
        f = conn.makefile("rb")
        index = 0
        while True:
            line, headers = self.read_head_fields(f)
            if not line:
                return
            length = int(headers.get("content-length", "0"))
            if length:
                f.read(length)
            with self.lock:
                self.log.append((number, line.decode("latin-1").strip(), headers))
            out = self.answer(number, index, line)
            index += 1
            if out is None:
                return
            if callable(out):
                out(conn)
            else:
                conn.sendall(out)

    def paths_by_connection(self):
        by = {}
        for number, line, _ in self.log:
            by.setdefault(number, []).append(line.split(" ")[1])
        return by


# Sandbox side: each call is one new connection with Connection: close,
# read to EOF; prints "status body" (body "-" when empty).
CLIENT = pftest.SANDBOX_READ_ALL + r"""
import socket, sys
def req(port, method, path, extra=b"", body=None, host=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    host = (host or "127.0.0.1:%d" % port).encode()
    head = method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n"
    if body is not None:
        head += b"Content-Length: %d\r\n" % len(body)
    s.sendall(head + extra + b"\r\n" + (body or b""))
    data = read_all(s)
    s.close()
    status = data.split(b" ", 2)[1].decode() if data else "-"
    body = data.partition(b"\r\n\r\n")[2].decode("latin-1").strip() or "-"
    print(status, body)
    sys.stdout.flush()
"""


class PoolCase(pftest.PinfoldTestCase):
    def origin(self, answer=None):
        o = ScriptedOrigin(answer)
        self.servers.append(o)
        return o

    def sandbox(self, policy, code, extra=()):
        return self.python_in_sandbox(policy, CLIENT + textwrap.dedent(code), extra=extra)

    def uses(self, r, **fields):
        return [a.get("upstream") for a in r.audit_where(event="http", **fields)]


class NoReuseAcrossKeys(PoolCase):
    def test_two_rules_never_share_an_upstream_connection(self):
        o = self.origin()
        policy = self.write_policy(f"""
            name: rules
            rules:
              - name: rule-a
                endpoint: http://127.0.0.1:{o.port}/a/*
              - name: rule-b
                endpoint: http://127.0.0.1:{o.port}/b/*
        """)
        r = self.sandbox(policy, f"""
            for p in ("/a/1", "/b/1", "/a/2", "/b/2", "/a/3", "/b/3"):
                req({o.port}, "GET", p)
        """)
        self.assertEqual(r.stdout.strip().split("\n"), ["200 ok"] * 6, r.stdout + r.stderr)
        by = o.paths_by_connection()
        self.assertEqual(len(by), 2, by)
        for paths in by.values():
            self.assertEqual(len({p.split("/")[1] for p in paths}), 1, f"one connection served two rules: {by}")
        allowed = r.audit_where(event="http", verdict="allow")
        for rule in ("rule-a", "rule-b"):
            self.assertEqual([a["upstream"] for a in allowed if a["rule"] == rule], ["new", "reused", "reused"],
                             allowed)

    def test_two_executables_never_share_an_upstream_connection(self):
        o = self.origin()
        policy = self.write_policy(f"""
            name: binaries
            rules:
              - name: any
                endpoint: http://127.0.0.1:{o.port}/**
        """)
        url = f"http://127.0.0.1:{o.port}/x"
        py = (f"{pftest.SANDBOX_PYTHON} -c 'import urllib.request as u; "
              f"u.urlopen(\"{url}\", timeout=10).read()'")
        script = f"""
            for i in 1 2 3; do
              curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' '{url}'
              {py} && echo py
            done
        """
        r = self.pinfold(policy, ["sh", "-c", script])
        self.assertEqual(r.stdout.split(), ["200", "py"] * 3, r.stdout + r.stderr)
        agents = {}
        for number, _, headers in o.log:
            agents.setdefault(number, set()).add(headers.get("user-agent", "").split("/")[0])
        self.assertEqual(len(agents), 2, agents)
        for seen in agents.values():
            self.assertEqual(len(seen), 1, f"one connection carried two executables' requests: {agents}")
        allowed = r.audit_where(event="http", verdict="allow")
        by_exe = {}
        for a in allowed:
            by_exe.setdefault(a["exe_id"], []).append(a["upstream"])
        self.assertEqual(sorted(by_exe.values()), [["new", "reused", "reused"]] * 2, allowed)

    def test_a_credential_injected_or_not_never_shares_an_upstream_connection(self):
        credtest.use_new_secret(self)
        provider = credtest.write_provider(self.tmp)
        o = self.origin()
        policy = self.write_policy(f"""
            name: creds
            rules:
              - name: api
                endpoint: http://127.0.0.1:{o.port}/api/**
                credentials: [github]
        """)
        r = self.sandbox(policy, f"""
            import os
            auth = b"Authorization: " + b"Bearer " + os.environ["GITHUB_TOKEN"].encode() + b"\\r\\n"
            for _ in range(3):
                req({o.port}, "GET", "/api/with", auth)
                req({o.port}, "GET", "/api/without")
        """, extra=["--provider", provider])
        self.assertEqual(r.stdout.strip().split("\n"), ["200 ok"] * 6, r.stdout + r.stderr)
        carried = {}
        for number, _, headers in o.log:
            carried.setdefault(number, set()).add("authorization" in headers)
        self.assertEqual(len(carried), 2, carried)
        for kinds in carried.values():
            self.assertEqual(len(kinds), 1, f"one connection carried requests with and without the credential: {carried}")
        allowed = r.audit_where(event="http", verdict="allow", rule="api")
        self.assertEqual([a["upstream"] for a in allowed], ["new", "new", "reused", "reused", "reused", "reused"],
                         allowed)

    def test_a_connection_authenticated_with_ntlm_serves_no_other_process(self):
        # The origin binds a connection to whoever completed the NTLM
        # exchange on it: later requests on that connection carry no
        # credential and get the private answer. Another process of the same
        # executable must never be handed that connection from the pool.
        authenticated = set()
        challenge = (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM TlRMTVNTUAACAAAA\r\n"
                     b"Content-Length: 5\r\n\r\nauth\n")
        secret = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsecret\n"

        def answer(number, index, line):
            auth = o.log[-1][2].get("authorization", "")
            if auth.startswith("NTLM TlRMTVNTUAABAAAA"):
                return challenge
            if auth.startswith("NTLM TlRMTVNTUAADAAAA"):
                authenticated.add(number)
                return secret
            return secret if number in authenticated else challenge
        o = self.origin(answer)
        policy = self.write_policy(f"""
            name: ntlm
            rules:
              - name: intranet
                endpoint: http://127.0.0.1:{o.port}/**
        """)
        first = textwrap.dedent(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {o.port}), timeout=10)
            f = s.makefile("rb")
            def get(path, auth):
                extra = b"Authorization: NTLM " + auth + b"\\r\\n" if auth else b""
                s.sendall(b"GET " + path + b" HTTP/1.1\\r\\nHost: 127.0.0.1:{o.port}\\r\\n" + extra + b"\\r\\n")
                status = f.readline().split(b" ")[1].decode()
                length = 0
                while True:
                    h = f.readline()
                    if h == b"\\r\\n":
                        break
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                print(status, f.read(length).decode().strip())
            get(b"/login", b"TlRMTVNTUAABAAAA")
            get(b"/login", b"TlRMTVNTUAADAAAA")
            get(b"/private", b"")
            s.close()
        """)
        second = CLIENT + textwrap.dedent(f"""
            req({o.port}, "GET", "/private")
        """)
        script = (f"{pftest.SANDBOX_PYTHON} -c {shlex.quote(first)} && "
                  f"{pftest.SANDBOX_PYTHON} -c {shlex.quote(second)}")
        r = self.pinfold(policy, ["sh", "-c", script])
        self.assertEqual(r.stdout.strip().split("\n"), ["401 auth", "200 secret", "200 secret", "401 auth"],
                         r.stdout + r.stderr)
        by = o.paths_by_connection()
        self.assertEqual(by, {1: ["/login", "/login", "/private"], 2: ["/private"]}, by)
        self.assertEqual(self.uses(r, verdict="allow"), ["new", "kept", "kept", "new"], r.audit)
        self.assertEqual(len({a["pid"] for a in r.audit_where(event="http", verdict="allow")}), 2, r.audit)


class DeniedAndDirty(PoolCase):
    def test_a_denied_request_reaches_no_upstream_pooled_or_not(self):
        o = self.origin()
        policy = self.write_policy(f"""
            name: deny
            rules:
              - name: items
                endpoint: http://127.0.0.1:{o.port}/items/*
        """)
        r = self.sandbox(policy, f"""
            req({o.port}, "GET", "/items/1")
            req({o.port}, "GET", "/admin")
            req({o.port}, "GET", "/items/1", b"Host: evil.example\\r\\n")
            req({o.port}, "GET", "/items/1", host="evil.example")
            # A second request as the content of an allowed GET: an origin
            # that does not read GET content would take it for a request.
            req({o.port}, "GET", "/items/1", body=b"GET /admin HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
            req({o.port}, "GET", "/items/2")
        """)
        self.assertEqual(r.stdout.strip().split("\n")[0], "200 ok", r.stdout + r.stderr)
        self.assertEqual([line.split(" ")[0] for line in r.stdout.strip().split("\n")],
                         ["200", "403", "400", "403", "400", "200"], r.stdout)
        self.assertEqual([line for _, line, _ in o.log], ["GET /items/1 HTTP/1.1", "GET /items/2 HTTP/1.1"], o.log)
        self.assertEqual(o.connections, 1)
        self.assertEqual(self.uses(r, verdict="allow"), ["new", "reused"], r.audit)
        denied = r.audit_where(event="http", verdict="deny")
        self.assertEqual(len(denied), 4, r.audit)
        self.assertTrue(any("content on a GET" in d.get("reason", "") for d in denied), denied)
        self.assertTrue(all("upstream" not in d for d in denied), denied)

    def smuggling_case(self, delayed):
        smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nSMUGGLED\n"

        def first_then_smuggle(conn):
            if delayed:
                conn.sendall(OK)
                time.sleep(0.1)
                conn.sendall(smuggled)
            else:
                conn.sendall(OK + smuggled)

        def answer(number, index, line):
            if number == 1 and index == 0:
                return first_then_smuggle
            return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfresh\n"
        o = self.origin(answer)
        policy = self.write_policy(f"""
            name: smuggle
            rules:
              - endpoint: http://127.0.0.1:{o.port}/**
        """)
        # Ordering only (the stray bytes land while the connection sits idle),
        # with a wide margin; the assertions hold whatever the timing.
        pause = "import time; time.sleep(1.5)" if delayed else ""
        r = self.sandbox(policy, f"""
            req({o.port}, "GET", "/one")
            {pause}
            req({o.port}, "GET", "/two")
            req({o.port}, "GET", "/three")
        """)
        self.assertEqual(r.stdout.strip().split("\n"), ["200 ok", "200 fresh", "200 fresh"], r.stdout + r.stderr)
        self.assertNotIn("SMUGGLED", r.stdout)
        # The smuggling connection served nothing more.
        self.assertEqual(o.paths_by_connection()[1], ["/one"], o.log)
        self.assertEqual(o.connections, 2, o.log)
        self.assertEqual(self.uses(r, verdict="allow"), ["new", "new", "reused"], r.audit)
        # Bytes that arrived while the connection sat in the pool are
        # reported when the probe finds them; bytes right behind a response
        # keep the connection out of the pool, so there is nothing to find.
        found = r.audit_where(event="upstream")
        self.assertEqual(len(found), 1 if delayed else 0, r.audit)
        for rec in found:
            self.assertEqual(rec["destination"], f"127.0.0.1:{o.port}", rec)
            self.assertIn("held bytes the origin sent unasked", rec["reason"], rec)
            self.assertTrue(rec.get("exe"), rec)

    def test_bytes_after_a_framed_response_are_never_pooled(self):
        self.smuggling_case(delayed=False)

    def test_bytes_arriving_while_pooled_discard_the_connection(self):
        self.smuggling_case(delayed=True)

    def test_a_body_after_a_head_response_is_never_pooled_or_served(self):
        # A HEAD response has no body whatever its Content-Length says; an
        # origin that sends one anyway is writing a second response.
        def answer(number, index, line):
            if number == 1 and index == 0:
                return (b"HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\n"
                        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nSMUGGLED\n")
            return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfresh\n"
        o = self.origin(answer)
        policy = self.write_policy(f"""
            name: head
            rules:
              - endpoint: http://127.0.0.1:{o.port}/**
                methods: [GET, HEAD]
        """)
        r = self.sandbox(policy, f"""
            req({o.port}, "HEAD", "/one")
            req({o.port}, "GET", "/two")
            req({o.port}, "GET", "/three")
        """)
        self.assertEqual(r.stdout.strip().split("\n"), ["200 -", "200 fresh", "200 fresh"], r.stdout + r.stderr)
        self.assertNotIn("SMUGGLED", r.stdout)
        self.assertEqual(o.paths_by_connection()[1], ["/one"], o.log)
        self.assertEqual(self.uses(r, verdict="allow"), ["new", "new", "reused"], r.audit)

    def test_a_close_delimited_response_is_not_pooled(self):
        def answer(number, index, line):
            if number == 1:
                def close_delimited(conn):
                    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil close\n")
                    conn.shutdown(1)   # the body ends here; the socket still reads
                    time.sleep(1)
                return close_delimited
            return OK
        o = self.origin(answer)
        policy = self.write_policy(f"""
            name: close-delimited
            rules:
              - endpoint: http://127.0.0.1:{o.port}/**
        """)
        r = self.sandbox(policy, f"""
            req({o.port}, "GET", "/one")
            req({o.port}, "GET", "/two")
        """)
        self.assertEqual(r.stdout.strip().split("\n"), ["200 until close", "200 ok"], r.stdout + r.stderr)
        self.assertEqual(o.paths_by_connection(), {1: ["/one"], 2: ["/two"]}, o.log)
        self.assertEqual(self.uses(r, verdict="allow"), ["new", "new"], r.audit)


class OriginClosesIdle(PoolCase):
    def test_get_is_retried_on_a_fresh_connection_and_post_never_rides_a_pooled_one(self):
        # Connection 1 answers its first request, then takes the next one
        # and closes without a byte: what an origin's idle timeout looks
        # like when it races the proxy's reuse.
        def answer(number, index, line):
            if number == 1 and index >= 1:
                return None
            return OK
        o = self.origin(answer)
        policy = self.write_policy(f"""
            name: retry
            rules:
              - name: all
                endpoint: http://127.0.0.1:{o.port}/**
                methods: [GET, POST]
        """)
        r = self.sandbox(policy, f"""
            req({o.port}, "GET", "/one")
            req({o.port}, "GET", "/two")
            req({o.port}, "POST", "/post", body=b"data")
            req({o.port}, "GET", "/three")
        """)
        self.assertEqual(r.stdout.strip().split("\n"), ["200 ok"] * 4, r.stdout + r.stderr)
        by = o.paths_by_connection()
        # /two was sent on the pooled connection 1, which closed; it was
        # sent again on connection 2. The POST went on a new connection
        # although connection 2 sat idle in the pool, and /three reused one.
        self.assertEqual(by[1], ["/one", "/two"], by)
        self.assertEqual(by[2][0], "/two", by)
        post_conn = [n for n, line, _ in o.log if line.startswith("POST")]
        self.assertEqual(len(post_conn), 1, o.log)
        self.assertEqual(by[post_conn[0]][0], "/post", f"the POST rode on a used connection: {by}")
        self.assertEqual(o.connections, 3, by)
        self.assertEqual(self.uses(r, verdict="allow"), ["new", "retry", "new", "reused"], r.audit)


if __name__ == "__main__":
    pftest.main()
