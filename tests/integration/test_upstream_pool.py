#!/usr/bin/env python3
"""The upstream keep-alive pool (userspace-proxy/proxy/upstream_pool.hpp):
a sandbox that opens one TCP connection per request (and asks to close it)
is served over one kept-alive proxy -> origin connection. The client still
gets "Connection: close" and its FIN; the origin never sees the client's
hop-by-hop close. The audit says which upstream each request used."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

# Runs in the sandbox: N GETs, each on a new connection with Connection:
# close, read to EOF; prints "status connection-field body" per request.
CLIENT = pftest.SANDBOX_READ_ALL + r"""
import socket
def one(method, path):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.sendall(method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nConnection: close\r\n\r\n")
    data = read_all(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    conn = [h.split(":", 1)[1].strip() for h in lines[1:] if h.startswith("connection:")]
    return lines[0].split(" ")[1] + " " + (",".join(conn) or "none") + " " + (body.decode().strip() or "-")
for i in range(COUNT):
    print(one("GET", "/items/%d" % i))
print(one("HEAD", "/items/head"))
print(one("GET", "/items/last"))
"""


class UpstreamPool(pftest.PinfoldTestCase):
    def test_sequential_new_connections_share_one_upstream_connection(self):
        up = self.server()
        policy = self.write_policy(f"""
            name: pool
            rules:
              - name: items
                endpoint: http://127.0.0.1:{up.port}/items/*
                methods: [GET, HEAD]
        """)
        count = 10
        r = self.python_in_sandbox(policy, CLIENT.replace("PORT", str(up.port)).replace("COUNT", str(count)))
        lines = r.stdout.strip().split("\n")
        want = ["200 close hello from upstream"] * count + ["200 close -", "200 close hello from upstream"]
        self.assertEqual(lines, want, r.stdout + r.stderr)
        self.assertEqual(len(up.requests), count + 2, up.requests)
        # One origin connection for all of them, and the client's close
        # never reached the origin (Connection is hop-by-hop).
        self.assertEqual(up.accepts, 1, up.requests)
        self.assertTrue(all("Connection" not in q["headers"] for q in up.requests), up.requests)
        allowed = r.audit_where(event="http", verdict="allow", status=200)
        self.assertEqual([a.get("upstream") for a in allowed], ["new"] + ["reused"] * (count + 1), allowed)

    def test_keep_alive_client_keeps_its_upstream_then_hands_it_on(self):
        up = self.server()
        policy = self.write_policy(f"""
            name: pool
            rules:
              - endpoint: http://127.0.0.1:{up.port}/items/*
        """)
        # Raw, so the order is certain: the first connection half-closes
        # and reads to the proxy's EOF, which comes only after the proxy
        # handed its upstream on; then the second connection asks.
        r = self.python_in_sandbox(policy, pftest.SANDBOX_READ_ALL + f"""
import socket
s = socket.create_connection(("127.0.0.1", {up.port}), timeout=10)
f = s.makefile("rb")
for i in range(3):
    s.sendall(b"GET /items/%d HTTP/1.1\\r\\nHost: 127.0.0.1:{up.port}\\r\\n\\r\\n" % i)
    length = 0
    while True:
        line = f.readline()
        if line in (b"\\r\\n", b""):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    print(f.read(length).decode().strip())
s.shutdown(socket.SHUT_WR)
print("eof", f.read() == b"")
s.close()
s = socket.create_connection(("127.0.0.1", {up.port}), timeout=10)
s.sendall(b"GET /items/again HTTP/1.1\\r\\nHost: 127.0.0.1:{up.port}\\r\\nConnection: close\\r\\n\\r\\n")
print(read_all(s).partition(b"\\r\\n\\r\\n")[2].decode().strip())
""")
        self.assertEqual(r.stdout.strip().split("\n"), ["hello from upstream"] * 3 + ["eof True", "hello from upstream"],
                         r.stdout + r.stderr)
        self.assertEqual(up.accepts, 1)
        allowed = r.audit_where(event="http", verdict="allow", status=200)
        self.assertEqual([a.get("upstream") for a in allowed], ["new", "kept", "kept", "reused"], allowed)


if __name__ == "__main__":
    pftest.main()
