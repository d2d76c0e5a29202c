#!/usr/bin/env python3
"""Large plain response bodies of known length go socket to socket by
splice(): the framing must stay exact (the next response on the same
connection is intact), the pipe is reused, a body cut short by the upstream
is reported, and the audit counts every byte."""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

BIG = 3 * 1024 * 1024 + 12345          # not a multiple of any pipe or buffer size
CUT_DECLARED = 2 * 1024 * 1024
CUT_SENT = 700 * 1024


def body_of(size, seed):
    block = bytes((i * 7 + seed) % 256 for i in range(65536))
    return (block * (size // len(block) + 1))[:size]


class Origin(pftest.RawOrigin):
    """GET /big/SEED: BIG bytes; /small: 5 bytes; /cut: declares more than it sends, then closes."""

    def serve(self, conn):
        f = conn.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            path = line.split()[1].decode()
            while f.readline() not in (b"\r\n", b""):
                pass
            if path.startswith("/big/"):
                body = body_of(BIG, int(path[5:]))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                # In pieces, so the proxy sees the body arrive over time.
                for i in range(0, len(body), 200_000):
                    conn.sendall(body[i:i + 200_000])
            elif path == "/cut":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % CUT_DECLARED)
                conn.sendall(body_of(CUT_SENT, 3))
                return
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall")


# Runs in the sandbox: one keep-alive connection, raw HTTP, exact framing.
CLIENT = r"""
import hashlib, socket, sys
s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
f = s.makefile("rb")

def get(path):
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n\r\n")
    status = f.readline()
    length = None
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    body = f.read(length)
    return status.split()[1].decode(), length, body

for path in ("/big/1", "/small", "/big/2", "/big/3", "/small"):
    status, length, body = get(path)
    print(path, status, length, len(body), hashlib.sha256(body).hexdigest())
# A body cut short: the client sees the connection end early.
status, length, body = get("/cut")
print("/cut", status, length, len(body))
"""


class SplicedBodies(pftest.PinfoldTestCase):
    def test_large_bodies_on_one_connection_keep_their_framing(self):
        origin = Origin()
        self.servers.append(origin)
        policy = self.write_policy(f"""
            name: splice
            rules:
              - endpoint: http://127.0.0.1:{origin.port}/**
        """)
        r = self.python_in_sandbox(policy, CLIENT.replace("PORT", str(origin.port)))
        lines = r.stdout.strip().split("\n")

        def line(path, seed=None):
            body = b"small" if seed is None else body_of(BIG, seed)
            return f"{path} 200 {len(body)} {len(body)} {hashlib.sha256(body).hexdigest()}"

        self.assertEqual(lines[:5], [line("/big/1", 1), line("/small"), line("/big/2", 2), line("/big/3", 3),
                                     line("/small")], r.stdout + r.stderr)
        self.assertEqual(lines[5], f"/cut 200 {CUT_DECLARED} {CUT_SENT}", r.stdout + r.stderr)

        head = len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        big = [rec for rec in r.audit_where(event="http", verdict="allow") if rec.get("path", "").startswith("/big/")]
        self.assertEqual(len(big), 3, r.audit)
        for rec in big:
            self.assertEqual(rec["bytes_out"], head + BIG, rec)
            self.assertEqual(rec["status"], 200, rec)
            self.assertTrue(rec["reason"].startswith("rule "), rec)   # the allow, not an interruption
        cut = r.audit_where(event="http", path="/cut")
        self.assertEqual(len(cut), 1, r.audit)
        self.assertEqual(cut[0]["reason"], "upstream closed inside the response", cut[0])
        cut_head = len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % CUT_DECLARED)
        self.assertEqual(cut[0]["bytes_out"], cut_head + CUT_SENT, cut[0])


if __name__ == "__main__":
    pftest.main()
