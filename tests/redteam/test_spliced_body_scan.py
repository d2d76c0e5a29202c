#!/usr/bin/env python3
"""Large request bodies of known length are spliced past the proxy only when
no credential provider is configured. With one configured, a placeholder or
the real secret deep inside a large plain-HTTP body (well past the bytes
read with the head, so a splice would already have taken over) must still
be found: the request is cut, audited as possible credential exfiltration,
and the upstream never receives the value."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import credtest  # noqa: E402
import pftest  # noqa: E402

EXFIL = "possible credential exfiltration"
SIZE = 3 * 1024 * 1024
AT = 2 * 1024 * 1024 + 777     # where the value sits in the body


class Origin(pftest.RawOrigin):
    """Reads one request and as much of its body as arrives; records it."""

    def __init__(self):
        super().__init__()
        self.bodies = []

    def serve(self, conn):
        f = conn.makefile("rb")
        line, length = self.read_head(f)
        if not line:
            return
        body = b""
        while len(body) < length:
            chunk = f.read1(65536)
            if not chunk:
                break
            body += chunk
        self.bodies.append(body)
        if len(body) == length:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


CLIENT = r"""
import os, socket, sys, time
value = sys.argv[1].encode()
body = bytearray(b"a" * SIZE)
body[AT:AT + len(value)] = value
s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
s.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nContent-Length: %d\r\n\r\n" % len(body))
try:
    for i in range(0, len(body), 256 * 1024):
        s.sendall(body[i:i + 256 * 1024])
        time.sleep(0.01)
    s.shutdown(socket.SHUT_WR)
    print("answer", s.recv(4096))
except OSError as e:
    print("cut", e.errno)
"""


class SplicedBodyScan(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.secret = credtest.use_new_secret(self)
        self.provider = credtest.write_provider(self.tmp)
        self.origin = Origin()
        self.servers.append(self.origin)
        self.policy = self.write_policy(f"""
            name: scan-large-bodies
            rules:
              - name: plain-upload
                endpoint: http://127.0.0.1:{self.origin.port}/**
                methods: [POST]
              - name: github-api
                endpoint: https://localhost:1/api/**
                methods: [GET]
                credentials: [github]
        """)

    def upload(self, value):
        client = CLIENT.replace("PORT", str(self.origin.port)).replace("SIZE", str(SIZE)).replace("AT", str(AT))
        return self.pinfold(self.policy, [pftest.SANDBOX_PYTHON, "-c", client, value],
                            extra=["--provider", self.provider])

    def assert_cut(self, r, value, kind):
        denied = [a for a in r.audit if a.get("verdict") == "deny" and EXFIL in a.get("reason", "")]
        self.assertEqual(len(denied), 1, r.audit)
        self.assertIn("request body", denied[0]["reason"])
        self.assertIn(kind, denied[0]["reason"])
        self.assertEqual(denied[0]["rule"], "plain-upload", denied[0])
        # The head and the body up to the value went upstream; never the value.
        self.assertLessEqual(len(self.origin.bodies), 1, r.audit)
        for body in self.origin.bodies:
            self.assertNotIn(value.encode(), body)
            self.assertLess(len(body), AT + len(value))
        self.assertNotIn(self.secret, r.stdout + r.stderr + str(r.audit))

    def test_placeholder_deep_in_a_large_plain_body(self):
        r = self.upload("__GITHUB_TOKEN__")
        self.assert_cut(r, "__GITHUB_TOKEN__", "placeholder")

    def test_secret_deep_in_a_large_plain_body(self):
        r = self.upload(self.secret)
        self.assert_cut(r, self.secret, "secret")

    def test_clean_large_body_goes_through(self):
        r = self.upload("nothing-to-see")
        self.assertIn("answer b'HTTP/1.1 200 OK", r.stdout, r.stdout + r.stderr)
        self.assertEqual([len(b) for b in self.origin.bodies], [SIZE], r.audit)
        allowed = r.audit_where(event="http", verdict="allow", path="/upload")
        self.assertEqual(len(allowed), 1, r.audit)


if __name__ == "__main__":
    pftest.main()
