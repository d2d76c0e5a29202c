#!/usr/bin/env python3
"""Holds N idle keep-alive connections for the proxy's RSS figure.

Prints "idle" and waits for "open" on stdin; opens N connections, sends one
GET on each and reads its response (so the proxy holds both the client and
the upstream socket), prints "open N" and waits for "done". Bounded: every
socket has a timeout, every wait on stdin ends after 120 s.

  idle_conns.py HOST PORT N [--absolute ORIGIN_HOST:PORT]
"""

import select
import socket
import sys

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
origin = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--absolute" else f"{host}:{port}"
target = f"http://{origin}/1k" if len(sys.argv) > 5 else "/1k"
request = f"GET {target} HTTP/1.1\r\nHost: {origin}\r\n\r\n".encode()


def wait_for(word):
    ready, _, _ = select.select([sys.stdin], [], [], 120)
    if not ready or sys.stdin.readline().strip() != word:
        sys.exit(f"idle_conns.py: no '{word}' on stdin")


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed inside the body")
        body += chunk


print("idle", flush=True)
wait_for("open")
conns = []
for _ in range(count):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(request)
    read_response(s)
    conns.append(s)
print(f"open {len(conns)}", flush=True)
wait_for("done")
for s in conns:
    s.close()
