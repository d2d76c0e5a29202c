#!/usr/bin/env python3
"""A client that asks for Connection: close gets a response that says so:
the proxy closes after the response (plain HTTP keeps the upstream for the
pool and does not pass the hop-by-hop close on; an intercepted session's
upstream is told to close), and a
client reading a "keep-alive" response would read into the end of the
connection and count an error (wrk did, on every intercepted request). An
intercepted TLS session then ends with close_notify, not a bare TCP close."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import pftest  # noqa: E402
from test_tls import TlsCase  # noqa: E402

# Runs in the sandbox: raw HTTP/1.1 (over TLS when TLS is set), one request
# per connection, read to the end; prints status, Connection field, how it ended.
CLIENT = r"""
import socket, ssl
TLS = TLS_FLAG
ctx = ssl.create_default_context()
for path in ("/items/1", "/admin"):
    s = socket.create_connection(("HOST", PORT), timeout=10)
    if TLS:
        s = ctx.wrap_socket(s, server_hostname="HOST", suppress_ragged_eofs=False)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: HOST:PORT\r\nConnection: close\r\n\r\n")
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                end = "close_notify" if TLS else "fin"
                break
            data += chunk
    except ssl.SSLEOFError:
        end = "eof without close_notify"
    except OSError as e:
        end = "error " + type(e).__name__
    head = data.split(b"\r\n\r\n")[0].decode().lower().split("\r\n")
    conn = [h.split(":", 1)[1].strip() for h in head[1:] if h.startswith("connection:")]
    print(path, head[0].split(" ")[1] if data else "-", ",".join(conn) or "none", end)
    s.close()
"""


def client(host, port, tls):
    return CLIENT.replace("TLS_FLAG", str(tls)).replace("HOST", host).replace("PORT", str(port))


class ConnectionClose(TlsCase):
    def test_intercepted_response_says_close_and_ends_with_close_notify(self):
        r = self.pinfold(self.policy_items(), [pftest.SANDBOX_PYTHON, "-c", client("localhost", self.port, True)],
                         extra=["--upstream-ca", self.ca.cert])
        lines = r.stdout.strip().split("\n")
        self.assertEqual(lines, ["/items/1 200 close close_notify", "/admin 403 close close_notify"],
                         r.stdout + r.stderr)
        self.assert_allowed_then_denied(r)
        self.assertEqual(self.up.requests[0]["headers"].get("Connection"), "close", self.up.requests)

    def test_plain_response_says_close(self):
        up = self.server()
        policy = self.write_policy(f"""
            name: plain
            rules:
              - endpoint: http://127.0.0.1:{up.port}/items/*
        """)
        r = self.python_in_sandbox(policy, client("127.0.0.1", up.port, False))
        lines = r.stdout.strip().split("\n")
        # The test server answers HTTP/1.1 without a Connection field.
        self.assertEqual(lines, ["/items/1 200 close fin", "/admin 403 close fin"], r.stdout + r.stderr)
        # Connection is hop-by-hop: the upstream stays open for the pool.
        self.assertEqual([q["headers"].get("Connection") for q in up.requests], [None], up.requests)
        self.assertEqual(up.accepts, 1)
        allowed = r.audit_where(event="http", verdict="allow")
        self.assertEqual(len(allowed), 1, r.audit)
        self.assertGreater(allowed[0]["bytes_out"], 0)


if __name__ == "__main__":
    pftest.main()
