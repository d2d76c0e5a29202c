#!/usr/bin/env python3
"""Large plain request bodies of known length go client to upstream by
splice() when no credential provider needs to scan them: the upstream gets
every byte, the request after a spliced body on the same connection (also
one sent in the same write, pipelined) is intact, the audit counts the bytes,
and a client that stops inside its body is reported."""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

BIG = 3 * 1024 * 1024 + 12345          # not a multiple of any pipe or buffer size
CUT_DECLARED = 2 * 1024 * 1024
CUT_SENT = 700 * 1024


class Origin(pftest.RawOrigin):
    """Reads each request and its Content-Length body; answers with the
    body's length and sha256, keep-alive. Records what each body was."""

    def __init__(self):
        super().__init__()
        self.bodies = []

    def serve(self, conn):
        f = conn.makefile("rb")
        while True:
            line, length = self.read_head(f)
            if not line:
                return
            method, path = line.split()[0].decode(), line.split()[1].decode()
            body = f.read(length)
            self.bodies.append((method, path, len(body)))
            if len(body) < length:
                return
            answer = f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))


# Runs in the sandbox: one keep-alive connection, raw HTTP.
CLIENT = r"""
import hashlib, socket, sys, time
s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
f = s.makefile("rb")

def body_of(size, seed):
    block = bytes((i * 7 + seed) % 256 for i in range(65536))
    return (block * (size // len(block) + 1))[:size]

def head(method, path, length=None):
    extra = b"Content-Length: %d\r\n" % length if length is not None else b""
    return method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n" + extra + b"\r\n"

def answer():
    status = f.readline()
    length = 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    return status.split()[1].decode() + " " + f.read(length).decode()

def post(path, seed, pieces=True):
    body = body_of(BIG, seed)
    s.sendall(head("POST", path, len(body)))
    if pieces:   # over time, so the proxy sees the body arrive in parts
        for i in range(0, len(body), 300_000):
            s.sendall(body[i:i + 300_000])
            time.sleep(0.01)
    else:
        s.sendall(body)
    print(path, answer(), hashlib.sha256(body).hexdigest())

post("/up/1", 1)
s.sendall(head("GET", "/small")); print("/small", answer())
post("/up/2", 2, pieces=False)
# Pipelined: the body and the next request in one write; the proxy must take
# exactly the body's length and leave the GET for the next exchange.
body = body_of(BIG, 3)
s.sendall(head("POST", "/up/3", len(body)) + body + head("GET", "/after"))
print("/up/3", answer(), hashlib.sha256(body).hexdigest())
print("/after", answer())
# A body cut short: the client stops sending and closes its side.
s.sendall(head("POST", "/cut", CUT_DECLARED) + body_of(CUT_SENT, 4))
s.shutdown(socket.SHUT_WR)
print("/cut", f.read())
"""


class SplicedRequestBodies(pftest.PinfoldTestCase):
    def test_large_request_bodies_on_one_connection_keep_their_framing(self):
        origin = Origin()
        self.servers.append(origin)
        policy = self.write_policy(f"""
            name: splice-up
            rules:
              - endpoint: http://127.0.0.1:{origin.port}/**
                methods: [GET, POST]
        """)
        client = CLIENT.replace("PORT", str(origin.port)).replace("CUT_DECLARED", str(CUT_DECLARED)).replace(
            "CUT_SENT", str(CUT_SENT)).replace("BIG", str(BIG))
        r = self.python_in_sandbox(policy, client)
        lines = r.stdout.strip().split("\n")
        self.assertEqual(len(lines), 6, r.stdout + r.stderr)
        for line in (lines[0], lines[2], lines[3]):
            path, status, length, digest, sent = line.split()
            self.assertEqual((status, length, digest), ("200", str(BIG), sent), line)
        self.assertEqual(lines[1], "/small 200 0 " + hashlib.sha256(b"").hexdigest(), r.stdout)
        self.assertEqual(lines[4], "/after 200 0 " + hashlib.sha256(b"").hexdigest(), r.stdout)
        self.assertEqual(lines[5], "/cut b''", r.stdout)   # no answer: the upstream never got the whole body
        self.assertEqual(origin.bodies[:5], [("POST", "/up/1", BIG), ("GET", "/small", 0), ("POST", "/up/2", BIG),
                                             ("POST", "/up/3", BIG), ("GET", "/after", 0)])
        self.assertEqual(origin.bodies[5][:2], ("POST", "/cut"))
        self.assertLessEqual(origin.bodies[5][2], CUT_SENT)

        up = [rec for rec in r.audit_where(event="http", verdict="allow") if rec.get("path", "").startswith("/up/")]
        self.assertEqual(len(up), 3, r.audit)
        for rec in up:
            head = len(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n\r\n"
                       % (rec["path"].encode(), origin.port, BIG))
            self.assertEqual(rec["bytes_in"], head + BIG, rec)
            self.assertEqual(rec["status"], 200, rec)
            self.assertTrue(rec["reason"].startswith("rule "), rec)
        cut = r.audit_where(event="http", path="/cut")
        self.assertEqual(len(cut), 1, r.audit)
        self.assertEqual(cut[0]["reason"], "client closed inside the request body", cut[0])
        cut_head = len(b"POST /cut HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\n\r\n"
                       % (origin.port, CUT_DECLARED))
        self.assertEqual(cut[0]["bytes_in"], cut_head + CUT_SENT, cut[0])


if __name__ == "__main__":
    pftest.main()
