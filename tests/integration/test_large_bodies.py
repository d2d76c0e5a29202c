#!/usr/bin/env python3
"""Large bodies through the proxy, several in a row: a stall (both sockets
unwatched with bytes still queued) shows up as a short or timed-out transfer."""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

SIZE = 48 * 1024 * 1024
BLOCK = bytes(range(256)) * 256  # 64 KiB, not all one byte


class BulkServer(pftest.RawOrigin):
    """Serves SIZE bytes per GET, counting; echoes a digest of POST bodies."""

    def serve(self, conn):
        f = conn.makefile("rb")
        while True:
            line, length = self.read_head(f)
            if not line:
                return
            method = line.split()[0]
            if method == b"POST":
                digest = hashlib.sha256()
                left = length
                while left:
                    chunk = f.read(min(left, 65536))
                    if not chunk:
                        return
                    digest.update(chunk)
                    left -= len(chunk)
                body = digest.hexdigest().encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
            for _ in range(SIZE // len(BLOCK)):
                conn.sendall(BLOCK)


class LargeBodies(pftest.PinfoldTestCase):
    def test_three_large_downloads_and_an_upload_in_a_row(self):
        up = BulkServer()
        self.servers.append(up)
        policy = self.write_policy(f"""
            name: bulk
            rules:
              - endpoint: http://127.0.0.1:{up.port}/**
        """)
        url = f"http://127.0.0.1:{up.port}/big"
        expected = hashlib.sha256(BLOCK * (SIZE // len(BLOCK))).hexdigest()
        script = f"""
            import hashlib, urllib.request
            for i in range(3):
                with urllib.request.urlopen("{url}", timeout=60) as r:
                    d = hashlib.sha256()
                    n = 0
                    while True:
                        chunk = r.read(1 << 20)
                        if not chunk:
                            break
                        n += len(chunk)
                        d.update(chunk)
                print("get", n, d.hexdigest())
            body = bytes(range(256)) * ({SIZE} // 256)
            req = urllib.request.Request("{url}", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=60) as r:
                print("post", r.read().decode())
        """
        r = self.python_in_sandbox(policy, script)
        lines = r.stdout.split("\n")
        self.assertEqual(lines[:3], [f"get {SIZE} {expected}"] * 3, r.stderr)
        self.assertEqual(lines[3:4], ["post " + hashlib.sha256(bytes(range(256)) * (SIZE // 256)).hexdigest()], r.stdout + r.stderr)
        self.assertEqual(len(r.audit_where(event="http", verdict="allow")), 4, r.audit)


if __name__ == "__main__":
    pftest.main()
