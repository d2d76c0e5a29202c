#!/usr/bin/env python3
"""A sandbox that opens connections faster than it closes them can drive
the proxy to its descriptor limit. accept4 then fails with EMFILE while the
connection stays queued, so a level-triggered listener would wake the proxy
again at once, for ever. The proxy must first give back its idle pooled
upstreams, then stop listening for about a second (audited, once per pause),
and serve again when descriptors are free. At no point may a queued
connection reach an origin without a decision.

pinfold runs under `prlimit` with a soft limit of 256 descriptors, which
the proxy inherits; the sandboxed client raises its own soft limit to the
hard one (4096), so it can hold more connections than the proxy can."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

PROXY_SOFT_LIMIT = 256
HELD = 400   # > PROXY_SOFT_LIMIT: each held connection costs the proxy a descriptor

CLIENT = pftest.SANDBOX_READ_ALL + r"""
import resource, socket, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def get(path):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nConnection: close\r\n\r\n")
    data = read_all(s)
    s.close()
    return data.split(b" ", 2)[1].decode() if data else "-"

# Keep-alive exchanges whose upstreams the proxy keeps in its idle pool.
pooled = []
for i in range(3):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(b"GET /warm HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(65536)
    pooled.append(s)
for s in pooled:
    s.close()
print("warm", len(pooled))

# Connections that never send a request: the proxy holds each until it
# sees a request or the idle timeout, far longer than this test.
held = []
for i in range(HELD):
    held.append(socket.create_connection(("127.0.0.1", PORT), timeout=5))
print("held", len(held))
time.sleep(2.5)
for s in held:
    s.close()

# Served again once descriptors are free: a bounded number of tries.
status = "-"
for attempt in range(10):
    try:
        status = get(b"/after")
    except OSError:
        time.sleep(0.5)
        continue
    if status == "200":
        break
    time.sleep(0.5)
print("after", status)
"""


class DescriptorExhaustion(pftest.PinfoldTestCase):
    def test_proxy_out_of_descriptors_pauses_and_recovers(self):
        up = self.server("127.0.0.1")
        policy = self.write_policy(f"""
            name: exhaustion
            rules:
              - name: origin
                endpoint: http://127.0.0.1:{up.port}/**
                methods: [GET]
        """)
        code = CLIENT.replace("PORT", str(up.port)).replace("HELD", str(HELD))
        r = self.pinfold(policy, [pftest.SANDBOX_PYTHON, "-c", code],
                         prefix=("prlimit", f"--nofile={PROXY_SOFT_LIMIT}:4096", "--"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.split("\n")[:3], ["warm 3", f"held {HELD}", "after 200"], r.stdout + r.stderr)

        # The pool went first, then the listeners paused: once per pause,
        # not once per failed accept4 (a spinning loop would write thousands).
        self.assertIn("closing", r.stderr)
        self.assertIn("idle upstream connections", r.stderr)
        limits = r.audit_where(event="limit", verdict="deny")
        self.assertGreaterEqual(len(limits), 1, r.audit)
        self.assertLessEqual(len(limits), 5, limits)
        for rec in limits:
            self.assertIn("proxy out of file descriptors", rec["reason"], rec)
            self.assertIn("Too many open files", rec["reason"], rec)

        # Nothing reached the origin but decided requests: the three warm-ups
        # and the one after; the held connections sent nothing and got nothing.
        self.assertEqual([q["path"] for q in up.requests], ["/warm"] * 3 + ["/after"], up.requests)
        allowed = r.audit_where(event="http", verdict="allow")
        self.assertEqual([a["path"] for a in allowed], ["/warm"] * 3 + ["/after"], allowed)


if __name__ == "__main__":
    pftest.main()
