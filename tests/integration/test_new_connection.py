#!/usr/bin/env python3
"""The first request of a new connection. The proxy reads right after
accept (the request is usually there already), and sends it to the origin
right after a non-blocking connect (on loopback the handshake is often done
by then); when either is not ready it waits for epoll as before. Each case
must give the same answer and the same audit record as the slow path, and a
connection that never sends a request must never reach an origin."""
import os
import socket
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

# Runs in the sandbox: one request per connection, sent as the brief says
# (whole, right after connect / in pieces with pauses / one byte at a time),
# read to the end; prints the status of each.
CLIENT = pftest.SANDBOX_READ_ALL + r"""
import socket, time
req = b"GET /items/1 HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nConnection: close\r\n\r\n"
def one(pieces, pause):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    for p in pieces:
        s.sendall(p)
        if pause:
            time.sleep(pause)
    data = read_all(s)
    s.close()
    return data.split(b" ", 2)[1].decode() if data else "-"
out = []
for _ in range(20):
    out.append(one([req], 0))
out.append(one([req[:5], req[5:30], req[30:]], 0.05))
out.append(one([req[i:i + 1] for i in range(len(req))], 0.001))
print(" ".join(out))
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NewConnection(pftest.PinfoldTestCase):
    def test_request_with_the_handshake_and_in_pieces(self):
        up = self.server()
        policy = self.write_policy(f"""
            name: newconn
            rules:
              - endpoint: http://127.0.0.1:{up.port}/items/*
        """)
        r = self.python_in_sandbox(policy, CLIENT.replace("PORT", str(up.port)))
        self.assertEqual(r.stdout.split(), ["200"] * 22, r.stdout + r.stderr)
        self.assertEqual(len(up.requests), 22, up.requests)
        self.assertEqual({q["path"] for q in up.requests}, {"/items/1"})
        allowed = r.audit_where(event="http", verdict="allow", status=200)
        self.assertEqual(len(allowed), 22, r.audit)
        self.assertTrue(all(a["bytes_out"] > 0 and a["path"] == "/items/1" for a in allowed), allowed)

    def test_busy_polling_serves_the_same(self):
        # --busy-poll-us only changes when the proxy sleeps: the same
        # connections, whole and in pieces, get the same answers and records.
        up = self.server()
        policy = self.write_policy(f"""
            name: newconn-busy
            rules:
              - endpoint: http://127.0.0.1:{up.port}/items/*
        """)
        r = self.python_in_sandbox(policy, CLIENT.replace("PORT", str(up.port)),
                                   extra=("--busy-poll-us", "200", "--log-level", "info"))
        self.assertIn("busy-polling 200 us", r.stderr)
        self.assertEqual(r.stdout.split(), ["200"] * 22, r.stdout + r.stderr)
        self.assertEqual(len(up.requests), 22, up.requests)
        allowed = r.audit_where(event="http", verdict="allow", status=200)
        self.assertEqual(len(allowed), 22, r.audit)

    def test_connection_without_a_request_reaches_no_origin(self):
        listener = self.raw_listener()
        up = self.server()
        policy = self.write_policy(f"""
            name: silent
            rules:
              - endpoint: http://127.0.0.1:{listener.port}/**
              - endpoint: http://127.0.0.1:{up.port}/**
        """)
        r = self.python_in_sandbox(policy, pftest.SANDBOX_READ_ALL + textwrap.dedent(f"""
            import socket, time
            # Connects and closes without a byte; connects, half-closes and
            # waits for the proxy to close; connects and idles a while.
            s = socket.create_connection(("127.0.0.1", {listener.port}), timeout=10)
            s.close()
            s = socket.create_connection(("127.0.0.1", {listener.port}), timeout=10)
            s.shutdown(socket.SHUT_WR)
            print("eof", s.recv(100) == b"")
            s.close()
            s = socket.create_connection(("127.0.0.1", {listener.port}), timeout=10)
            time.sleep(0.3)
            s.close()
            # The proxy still serves: a request to the other origin.
            s = socket.create_connection(("127.0.0.1", {up.port}), timeout=10)
            s.sendall(b"GET /x HTTP/1.1\\r\\nHost: 127.0.0.1:{up.port}\\r\\nConnection: close\\r\\n\\r\\n")
            print("status", read_all(s).split(b" ", 2)[1].decode())
        """))
        self.assertEqual(r.stdout.split("\n")[:2], ["eof True", "status 200"], r.stdout + r.stderr)
        self.assertEqual(listener.accepts, 0, "a connection without a request reached the origin")
        self.assertEqual([a.get("destination") for a in r.audit if a.get("verdict") == "allow"],
                         [f"127.0.0.1:{up.port}"], r.audit)

    def test_refused_upstream_is_a_502_and_audited(self):
        port = free_port()   # nothing listens: the origin's SYN gets a RST
        policy = self.write_policy(f"""
            name: refused
            rules:
              - name: nothing-there
                endpoint: http://127.0.0.1:{port}/**
        """)
        r = self.python_in_sandbox(policy, pftest.SANDBOX_READ_ALL + textwrap.dedent(f"""
            import socket
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
                s.sendall(b"GET /a HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n")
                data = read_all(s)
                s.close()
                print(data.split(b" ", 2)[1].decode(), b"Connection refused" in data)
        """))
        self.assertEqual(r.stdout.split("\n")[:3], ["502 True"] * 3, r.stdout + r.stderr)
        recs = r.audit_where(event="http", status=502)
        self.assertEqual(len(recs), 3, r.audit)
        for rec in recs:
            self.assertEqual(rec["rule"], "nothing-there", rec)
            self.assertEqual(rec["reason"], f"cannot connect to 127.0.0.1:{port}: Connection refused", rec)


if __name__ == "__main__":
    pftest.main()
