#!/usr/bin/env python3
"""Chunked request bodies (docs/credentials.md): the chunk framing can cut a
placeholder or the secret in two ("__GITH" in one chunk, "UB_TOKEN__" in the
next), so a scan of the bytes on the wire never sees it, while the server
reassembles it. The proxy scans the de-chunked payload with a carry-over
window. Here the sandbox sends such bodies over intercepted TLS, each chunk
itself split across two TLS records and TCP segments; each must be refused,
audited as possible exfiltration, and the server must never receive the
reassembled value."""
import json
import os
import socket
import ssl
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import credtest  # noqa: E402
import pftest  # noqa: E402
import tlstest  # noqa: E402

EXFIL = "possible credential exfiltration"

# Runs in the sandbox: one POST with a chunked body whose chunks are `parts`;
# every chunk goes out as two TLS records (TCP_NODELAY, a pause between).
CLIENT = r"""
import os, socket, ssl, sys, time
port, parts = int(sys.argv[1]), sys.argv[2:]
parts = [p.replace("@TOKEN@", os.environ["GITHUB_TOKEN"]) for p in parts]
ctx = ssl.create_default_context()
raw = socket.create_connection(("localhost", port), timeout=10)
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s = ctx.wrap_socket(raw, server_hostname="localhost")
try:
    s.sendall(("POST /api/upload HTTP/1.1\r\nHost: localhost:%d\r\nTransfer-Encoding: chunked\r\n"
               "Content-Type: text/plain\r\n\r\n" % port).encode())
    for part in parts:
        chunk = ("%x;ext=1\r\n%s\r\n" % (len(part), part)).encode()
        half = len(chunk) // 2
        s.sendall(chunk[:half]); time.sleep(0.05)
        s.sendall(chunk[half:]); time.sleep(0.05)
    s.sendall(b"0\r\n\r\n")
    answer = s.recv(4096)
    print("status", answer.split(b" ")[1].decode() if answer else "cut")
except (OSError, ssl.SSLError) as e:
    print("status cut", type(e).__name__)
"""


class RawTlsServer:
    """Accepts TLS connections and records every byte each one delivers;
    answers 200 once a chunked body's last chunk arrived."""

    def __init__(self, ca):
        cert, key = ca.leaf(["localhost", "127.0.0.1"])
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            data = bytearray()
            self.received.append(data)
            try:
                conn.settimeout(10)
                tls = self.ctx.wrap_socket(conn, server_side=True)
                while b"\r\n0\r\n\r\n" not in data and len(data) < 1 << 20:
                    got = tls.recv(65536)
                    if not got:
                        break
                    data += got
                if b"\r\n0\r\n\r\n" in data:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                tls.close()
            except (OSError, ssl.SSLError):
                conn.close()

    @staticmethod
    def dechunk(data):
        body = bytes(data).split(b"\r\n\r\n", 1)[-1]
        out = b""
        while body:
            line, _, rest = body.partition(b"\r\n")
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                break
            out += rest[:size]
            body = rest[size + 2:]
            if size == 0:
                break
        return out

    def payloads(self):
        return [self.dechunk(d) for d in self.received]

    def close(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


class ChunkedExfiltration(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.secret = credtest.use_new_secret(self)
        self.ca = tlstest.TestCA(self.tmp)
        self.up = RawTlsServer(self.ca)
        self.servers.append(self.up)
        self.provider = credtest.write_provider(self.tmp)
        self.policy = self.write_policy(f"""
            name: chunked
            rules:
              - name: upload
                endpoint: https://localhost:{self.up.port}/api/**
                methods: [POST]
                credentials: [github]
        """)

    def send(self, *parts):
        script = os.path.join(self.tmp, "client.py")
        with open(script, "w") as f:
            f.write(CLIENT)
        os.chmod(script, 0o644)
        os.chmod(self.tmp, 0o755)
        return self.pinfold(self.policy, [pftest.SANDBOX_PYTHON, script, str(self.up.port), *parts],
                            extra=["--upstream-ca", self.ca.cert, "--provider", self.provider, "--ro", script])

    def assert_refused(self, r, needle, secret):
        self.assertRegex(r.stdout, r"status (403|cut)", r.stdout + r.stderr)
        denied = [a for a in r.audit if a.get("verdict") == "deny" and EXFIL in a.get("reason", "")]
        self.assertEqual(len(denied), 1, r.audit)
        self.assertIn("request body", denied[0]["reason"])
        self.assertIn("the secret" if secret else "the placeholder", denied[0]["reason"])
        for payload in self.up.payloads():
            self.assertNotIn(needle.encode(), payload)
        self.assertNotIn(self.secret, r.stdout + r.stderr + json.dumps(r.audit))

    def test_placeholder_split_across_chunks_and_records(self):
        # "__GITHUB_TOKEN__" travels as "__GI" | "THUB_TO" | "KEN__".
        r = self.send('{"note": "__GI', "THUB_TO", 'KEN__"}')
        self.assert_refused(r, "__GITHUB_TOKEN__", secret=False)

    def test_placeholder_one_byte_per_chunk(self):
        r = self.send("pad", *"__GITHUB_TOKEN__", "end")
        self.assert_refused(r, "__GITHUB_TOKEN__", secret=False)

    def test_real_secret_split_across_chunks(self):
        # The sandbox cannot know the secret; if it ever does, the split
        # does not hide it.
        half = len(self.secret) // 2
        r = self.send("data=" + self.secret[:half], self.secret[half:])
        self.assert_refused(r, self.secret, secret=True)

    def test_clean_chunked_body_goes_through(self):
        r = self.send("hello ", "__GITHUB", " world")
        self.assertIn("status 200", r.stdout, r.stdout + r.stderr + json.dumps(r.audit))
        self.assertEqual(self.up.payloads()[-1], b"hello __GITHUB world")
        self.assertEqual(r.audit_where(verdict="allow", rule="upload")[0]["status"], 200)


if __name__ == "__main__":
    pftest.main()
