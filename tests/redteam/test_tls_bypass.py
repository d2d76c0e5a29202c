#!/usr/bin/env python3
"""Ways around the TLS policy: each attempt must fail and be audited.
Domain fronting (Host differs from SNI), SNI of one host while dialling
another, no SNI, an IP literal as SNI, Encrypted Client Hello."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402
import tlstest  # noqa: E402


def client_hello_py(port, sni, ech=False):
    """A shell command: /usr/bin/python3 sends a hand-built ClientHello with
    server name `sni` to 127.0.0.1:PORT and prints the reply's first bytes."""
    return "/usr/bin/python3 -c '" + HELLO_SOURCE + f"' {port} {sni} {int(ech)}"


HELLO_SOURCE = """
import socket, struct, sys
def vec16(b): return struct.pack("!H", len(b)) + b
ext = b""
sni = sys.argv[2]
if sni:
    name = sni.encode()
    ext += struct.pack("!H", 0) + vec16(vec16(b"\\x00" + vec16(name)))
if sys.argv[3] == "1":
    ext += struct.pack("!H", 0xfe0d) + vec16(b"\\x00" * 40)
ext += struct.pack("!H", 43) + vec16(b"\\x02\\x03\\x04")
body = b"\\x03\\x03" + b"r" * 32 + b"\\x00" + vec16(b"\\x13\\x01") + b"\\x01\\x00" + vec16(ext)
hs = b"\\x01" + struct.pack("!I", len(body))[1:] + body
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"\\x16\\x03\\x01" + vec16(hs))
print("got", s.recv(100).hex())
"""


class TlsBypass(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.ca = tlstest.TestCA(self.tmp)
        self.up = tlstest.HttpsServer(self.ca, names=("localhost", "other.example"))
        self.servers.append(self.up)
        self.port = self.up.port
        # Both names are allowed in full: only consistency can refuse.
        self.policy = self.write_policy(f"""
            name: redteam-tls
            rules:
              - endpoint: https://localhost:{self.port}/items/*
              - endpoint: https://other.example:{self.port}/**
                tls: intercept
              - endpoint: https://b.example:{self.port}/**
        """)

    def run_sh(self, script, extra=()):
        return self.pinfold(self.policy, ["sh", "-c", script],
                            extra=["--upstream-ca", self.ca.cert, *extra])

    def tls_denials(self, r):
        return r.audit_where(event="tls", verdict="deny")

    def test_domain_fronting_host_differs_from_sni(self):
        # SNI localhost (allowed), Host other.example (also allowed, and an
        # address of 127.0.0.1): still refused, the names must agree.
        r = self.run_sh(f"curl -sS --max-time 10 -H 'Host: other.example:{self.port}' "
                        f"https://localhost:{self.port}/items/1", extra=["--host", "other.example=127.0.0.1"])
        self.assertIn('"status":403', r.stdout, r.stderr)
        self.assertIn("differs from the TLS server name", r.stdout)
        self.assertEqual(self.up.requests, [])
        rec = r.audit_where(event="https", verdict="deny")
        self.assertEqual(len(rec), 1, r.audit)
        self.assertIn("differs from the TLS server name localhost", rec[0]["reason"])

    def test_sni_of_another_host_than_the_dialled_address(self):
        # b.example is allowed, but lives at 127.0.0.2; the client dials
        # 127.0.0.1 (host A) and names B.
        r = self.run_sh(f"openssl s_client -connect 127.0.0.1:{self.port} -servername b.example </dev/null; "
                        f"echo rc=$?", extra=["--host", "b.example=127.0.0.2"])
        self.assertIn("rc=1", r.stdout, r.stderr)
        self.assertEqual(self.up.requests, [])
        rec = self.tls_denials(r)
        self.assertEqual(len(rec), 1, r.audit)
        self.assertEqual(rec[0]["host"], "b.example")
        self.assertIn("not an address of b.example", rec[0]["reason"])

    def test_no_sni_is_denied(self):
        r = self.run_sh(f"openssl s_client -connect 127.0.0.1:{self.port} -noservername </dev/null; echo rc=$?")
        self.assertIn("rc=1", r.stdout, r.stderr)
        self.assertIn("access denied", r.stdout + r.stderr)
        rec = self.tls_denials(r)
        self.assertEqual(len(rec), 1, r.audit)
        self.assertIn("no server name (SNI)", rec[0]["reason"])
        self.assertEqual(self.up.accepts, 0)

    def test_ip_literal_sni_is_denied(self):
        r = self.run_sh(f"{client_hello_py(self.port, '127.0.0.1')}")
        # 15 03 03 00 02 02 31: a fatal access_denied alert, nothing else.
        self.assertIn("got 15030300020231", r.stdout, r.stderr)
        rec = self.tls_denials(r)
        self.assertEqual(len(rec), 1, r.audit)
        self.assertIn("IP literal", rec[0]["reason"])
        self.assertEqual(self.up.accepts, 0)

    def test_encrypted_client_hello_is_denied(self):
        r = self.run_sh(f"{client_hello_py(self.port, 'localhost', ech=True)}")
        self.assertIn("got 15030300020231", r.stdout, r.stderr)
        rec = self.tls_denials(r)
        self.assertEqual(len(rec), 1, r.audit)
        self.assertIn("Encrypted Client Hello", rec[0]["reason"])
        self.assertEqual(self.up.accepts, 0)

    def test_sni_that_is_not_a_name_is_denied(self):
        r = self.run_sh(f"{client_hello_py(self.port, 'local_host!')}")
        self.assertIn("got 15030300020231", r.stdout, r.stderr)
        rec = self.tls_denials(r)
        self.assertEqual(len(rec), 1, r.audit)
        self.assertIn("not a valid DNS name", rec[0]["reason"])


if __name__ == "__main__":
    pftest.main()
