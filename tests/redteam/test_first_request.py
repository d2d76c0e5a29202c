#!/usr/bin/env python3
"""The first request of a connection is read in the proxy's accept wake-up
and, when allowed, leaves with the upstream connect. Nothing may reach an
origin earlier than a decision allows: a denied request sent together with
the handshake opens no connection to the origin, a destination no rule names
never sees a SYN, and a denied request pipelined behind an allowed one is
not sent with it. Each attempt is audited."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

READ_ALL = pftest.SANDBOX_READ_ALL


class FirstRequest(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        self.unnamed = self.raw_listener("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: first-request
            rules:
              - name: public
                endpoint: http://127.0.0.1:{self.up.port}/public/**
                methods: [GET]
        """)

    def test_denied_request_with_the_handshake_opens_no_upstream(self):
        r = self.python_in_sandbox(self.policy, READ_ALL + f"""
import socket
out = []
for i in range(20):
    s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=10)
    s.sendall(b"GET /private/" + str(i).encode() + b" HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n")
    out.append(read_all(s).split(b" ", 2)[1].decode())
    s.close()
print(" ".join(out))
""")
        self.assertEqual(r.stdout.split(), ["403"] * 20, r.stdout + r.stderr)
        self.assertEqual(self.up.accepts, 0, "a denied first request opened a connection to the origin")
        self.assertEqual(len(r.audit_where(event="http", verdict="deny", status=403)), 20, r.audit)

    def test_destination_no_rule_names_sees_no_syn(self):
        r = self.python_in_sandbox(self.policy, READ_ALL + f"""
import socket
s = socket.create_connection(("127.0.0.1", {self.unnamed.port}), timeout=10)
s.sendall(b"GET /public/x HTTP/1.1\\r\\nHost: 127.0.0.1:{self.unnamed.port}\\r\\n\\r\\n")
print(read_all(s).split(b" ", 2)[1].decode())
""")
        self.assertEqual(r.stdout.strip(), "403", r.stdout + r.stderr)
        self.assertEqual(self.unnamed.accepts, 0, "an origin no rule names was connected to")
        deny = r.audit_where(event="http", verdict="deny")
        self.assertEqual([d["destination"] for d in deny], [f"127.0.0.1:{self.unnamed.port}"], r.audit)

    def test_denied_request_pipelined_behind_an_allowed_one_is_not_sent(self):
        r = self.python_in_sandbox(self.policy, READ_ALL + f"""
import socket
host = b"Host: 127.0.0.1:{self.up.port}\\r\\n"
s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=10)
s.sendall(b"GET /public/a HTTP/1.1\\r\\n" + host + b"\\r\\n" +
          b"GET /private/b HTTP/1.1\\r\\n" + host + b"Connection: close\\r\\n\\r\\n")
data = read_all(s)
print(data.count(b"HTTP/1.1 200"), data.count(b"HTTP/1.1 403"))
""")
        self.assertEqual(r.stdout.strip(), "1 1", r.stdout + r.stderr)
        self.assertEqual([q["path"] for q in self.up.requests], ["/public/a"])
        self.assertEqual(len(r.audit_where(event="http", verdict="allow", status=200)), 1, r.audit)
        self.assertEqual(len(r.audit_where(event="http", verdict="deny", status=403)), 1, r.audit)


if __name__ == "__main__":
    pftest.main()
