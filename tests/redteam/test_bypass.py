#!/usr/bin/env python3
"""One test per technique a sandboxed agent may use to get around the
proxy. Each asserts that the attempt fails and that it was audited."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402


class Bypass(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: redteam
            rules:
              - name: public
                endpoint: http://127.0.0.1:{self.up.port}/public/**
                methods: [GET, POST]
        """)

    def run_py(self, code):
        return self.python_in_sandbox(self.policy, code)

    def assert_no_upstream_request(self, allowed_paths=()):
        self.assertEqual([q["path"] for q in self.up.requests], list(allowed_paths))

    def test_client_ignoring_proxy_settings_is_policed(self):
        r = self.pinfold(self.policy, ["env", "http_proxy=http://127.0.0.1:9", "curl", "-sS", "--max-time", "10",
                                       "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
                                       self.up.url("/private")])
        self.assertEqual(r.stdout, "403", r.stderr)
        self.assertEqual(len(r.audit_where(event="http", verdict="deny")), 1)
        self.assert_no_upstream_request()

    def test_raw_socket_client_is_policed(self):
        r = self.run_py(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            s.sendall(b"GET /private HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n")
            print(s.recv(4096).decode().split("\\r\\n")[0])
        """)
        self.assertIn("403", r.stdout, r.stderr)
        self.assertEqual(len(r.audit_where(event="http", verdict="deny")), 1)
        self.assert_no_upstream_request()

    def test_ipv4_mapped_ipv6_destination_is_steered(self):
        r = self.run_py(f"""
            import socket
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(("::ffff:127.0.0.1", {self.up.port}))
            s.sendall(b"GET /private HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n")
            print(s.recv(4096).decode().split("\\r\\n")[0])
        """)
        self.assertIn("403", r.stdout, r.stderr)
        deny = r.audit_where(event="http", verdict="deny")
        self.assertEqual(len(deny), 1)
        self.assertEqual(deny[0]["destination"], f"127.0.0.1:{self.up.port}")
        self.assert_no_upstream_request()

    def test_udp_sendto_is_refused(self):
        r = self.run_py("""
            import socket
            # QUIC-style UDP 443 (port 53 goes to pinfold's resolver: test_dns.py).
            for family, addr in ((socket.AF_INET, ("127.0.0.1", 443)), (socket.AF_INET6, ("::1", 443)),
                                 (socket.AF_INET6, ("::ffff:127.0.0.1", 443))):
                s = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    s.sendto(b"x", addr)
                    print("SENT", addr)
                except PermissionError:
                    print("EPERM")
        """)
        self.assertEqual(r.stdout.split(), ["EPERM"] * 3, r.stderr)
        self.assertEqual(len(r.audit_where(event="sendmsg", verdict="deny")), 3, r.audit)

    def test_connected_udp_is_refused(self):
        r = self.run_py("""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.connect(("127.0.0.1", 443))
                print("CONNECTED")
            except PermissionError:
                print("EPERM")
        """)
        self.assertEqual(r.stdout.strip(), "EPERM", r.stderr)
        self.assertEqual(len(r.audit_where(event="connect", verdict="deny")), 1, r.audit)

    def open_socket_kinds(self, extra=()):
        # Let the kernel itself allow ICMP "ping" sockets for every group,
        # so that refusing them is the hook's doing, not ping_group_range's.
        sysctl = "/proc/sys/net/ipv4/ping_group_range"
        with open(sysctl) as f:
            saved = f.read()
        with open(sysctl, "w") as f:
            f.write("0 2147483647")
        self.addCleanup(lambda: open(sysctl, "w").write(saved))
        return self.python_in_sandbox(self.policy, """
            import socket
            kinds = [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP),
                     (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP),
                     (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
                     (socket.AF_INET, socket.SOCK_STREAM, 262),   # MPTCP
                     (socket.AF_INET, socket.SOCK_STREAM, 132)]   # SCTP
            import errno
            for k in kinds:
                try:
                    socket.socket(*k)
                    print("OPENED", k)
                except OSError as e:
                    if e.errno == errno.EPERM:
                        print("EPERM")
                        continue
                    # A protocol the kernel does not have (SCTP as a module
                    # not loaded) fails before the hook: refused all the same.
                    print("NOPROTO" if e.errno == errno.EPROTONOSUPPORT else e)
        """, extra=extra)

    def test_raw_and_other_socket_kinds_are_refused_by_the_hook(self):
        # --sandbox off: the command keeps pinfold's CAP_NET_RAW, so even raw
        # sockets get as far as the sock_create hook, which alone refuses them.
        r = self.open_socket_kinds(extra=["--sandbox", "off"])
        outcomes = r.stdout.split()
        self.assertEqual(len(outcomes), 5, r.stdout + r.stderr)
        self.assertTrue(all(o in ("EPERM", "NOPROTO") for o in outcomes), r.stdout + r.stderr)
        self.assertEqual(outcomes[:4], ["EPERM"] * 4)
        self.assertEqual(len(r.audit_where(event="socket", verdict="deny")), outcomes.count("EPERM"), r.audit)

    def test_raw_and_other_socket_kinds_are_refused_in_the_sandbox(self):
        # Layered: in the sandbox the kernel refuses raw sockets before the
        # hook (no CAP_NET_RAW, so no audit record for those two); ICMP and
        # MPTCP pass the kernel's checks and are refused and audited by the hook.
        r = self.open_socket_kinds()
        outcomes = r.stdout.split()
        self.assertEqual(len(outcomes), 5, r.stdout + r.stderr)
        self.assertTrue(all(o in ("EPERM", "NOPROTO") for o in outcomes), r.stdout + r.stderr)
        self.assertEqual(outcomes[:4], ["EPERM"] * 4)
        hooked = r.audit_where(event="socket", verdict="deny")
        self.assertEqual(len(hooked), outcomes.count("EPERM") - 2, r.audit)
        self.assertTrue(all("type 3" not in rec["reason"] for rec in hooked), hooked)   # SOCK_RAW never got there

    def test_pipelined_second_request_to_denied_path(self):
        r = self.run_py(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            h = "Host: 127.0.0.1:{self.up.port}\\r\\n"
            s.sendall(("GET /public/a HTTP/1.1\\r\\n" + h + "\\r\\nGET /private HTTP/1.1\\r\\n" + h + "\\r\\n").encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            import re
            print(re.findall(r"HTTP/1\\.1 \\d+ [A-Za-z ]+", data.decode()))
        """)
        self.assertIn("['HTTP/1.1 200 OK', 'HTTP/1.1 403 Forbidden']", r.stdout, r.stderr)
        self.assert_no_upstream_request(["/public/a"])
        self.assertEqual(len(r.audit_where(event="http", verdict="deny")), 1)

    def test_request_smuggling_cl_te_is_rejected(self):
        r = self.run_py(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            s.sendall(b"POST /public/a HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n"
                      b"Content-Length: 44\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"
                      b"0\\r\\n\\r\\nGET /private HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            print(s.recv(4096).decode().split("\\r\\n")[0])
        """)
        self.assertIn("400", r.stdout, r.stderr)
        self.assert_no_upstream_request()
        self.assertEqual(len(r.audit_where(event="http", verdict="deny")), 1, r.audit)

    def test_path_tricks_are_normalised_or_refused(self):
        tricks = ["/public/../private", "/public/%2e%2e/private", "/public/%2E%2E/private",
                  "/public%2f..%2fprivate", "/public/..%2fprivate", "/PUBLIC/x", "/public/%252e%252e/private"]
        code = f"""
            import socket
            for path in {tricks!r}:
                s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
                s.sendall(("GET " + path + " HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n").encode())
                print(s.recv(4096).decode().split("\\r\\n")[0].split()[1])
                s.close()
        """
        r = self.run_py(code)
        self.assertEqual(r.stdout.split(), ["403"] * len(tricks), r.stdout + r.stderr)
        self.assert_no_upstream_request()
        self.assertEqual(len(r.audit_where(event="http", verdict="deny")), len(tricks))

    def test_double_slashes_match_what_upstream_gets(self):
        r = self.pinfold(self.policy, ["curl", "-sS", "--max-time", "10", "--path-as-is",
                                       self.up.url("//public//./a")])
        self.assertEqual(r.stdout, "hello from upstream\n", r.stderr)
        self.assert_no_upstream_request(["/public/a"])

    def test_connecting_to_the_proxy_itself_is_refused(self):
        # Learn the proxy's port from where our own connection landed.
        r = self.run_py(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            port = s.getpeername()[1]
            s.close()
            t = socket.create_connection(("127.0.0.1", port), timeout=5)
            t.sendall(b"GET /public/a HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n\\r\\n" % port)
            try:
                print("got", t.recv(100))
            except ConnectionResetError:
                print("got reset")
        """)
        self.assertRegex(r.stdout, "got (b''|reset)", r.stderr)
        self.assertTrue(r.audit_where(event="connect", reason="connection to the proxy itself"), r.audit)

    def test_new_network_namespace_gets_eperm(self):
        # Inside the sandbox only a nested user namespace can own a new
        # network namespace (-r); the hook still sees and refuses its connect.
        r = self.pinfold(self.policy, ["unshare", "-rn", pftest.SANDBOX_PYTHON, "-c", f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
    print("CONNECTED")
except PermissionError:
    print("EPERM")
except OSError as e:
    print("OTHER", e)
"""])
        self.assertEqual(r.stdout.strip(), "EPERM", r.stderr)
        self.assertTrue(r.audit_where(event="connect", verdict="deny",
                                      reason="connect from another network namespace"), r.audit)

    def test_websocket_upgrade_is_refused(self):
        r = self.run_py(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            s.sendall(b"GET /public/ws HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n"
                      b"Connection: Upgrade\\r\\nUpgrade: websocket\\r\\n\\r\\n")
            print(s.recv(4096).decode().split("\\r\\n")[0])
        """)
        self.assertIn("403", r.stdout, r.stderr)
        self.assert_no_upstream_request()
        self.assertTrue(r.audit_where(event="http", verdict="deny", reason="protocol upgrade is not supported"))


if __name__ == "__main__":
    pftest.main()
