#!/usr/bin/env python3
"""--allow-private-netns: connects made in a network namespace the command
created pass the hooks untouched. Each test tries to turn that into a way
out: the host's loopback from the private namespace, the host's namespace
itself, the option where the command keeps the host's capabilities. Off by
default: test_bypass.test_new_network_namespace_gets_eperm."""
import os
import socket
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

OPT = "--allow-private-netns"

# The sandbox's python; ctypes because os.setns/os.unshare need 3.12.
NS_HELPERS = textwrap.dedent("""
    import ctypes, errno, os, socket
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

    def check(rc, what):
        if rc != 0:
            e = ctypes.get_errno()
            raise OSError(e, what + ": " + os.strerror(e))
""")


class PrivateNetns(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: redteam-netns
            rules:
              - name: public
                endpoint: http://127.0.0.1:{self.up.port}/public/**
                methods: [GET]
        """)

    def udp_sink(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        self.addCleanup(s.close)
        return s

    def assert_nothing_received(self, sink):
        with self.assertRaises(BlockingIOError):
            sink.recvfrom(100)

    def test_private_netns_reaches_only_itself(self):
        listener = self.raw_listener("127.0.0.1")
        sink = self.udp_sink()
        udp_port = sink.getsockname()[1]
        host_step = textwrap.dedent(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            s.sendall(b"GET /public/a HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\nConnection: close\\r\\n\\r\\n")
            print("HOST", s.recv(4096).decode().split("\\r\\n")[0])
        """)
        netns_step = textwrap.dedent(f"""
            import socket
            for port in ({self.up.port}, {listener.port}):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=5)
                    print("CONNECTED")
                except ConnectionRefusedError:
                    print("REFUSED")
                except OSError as e:
                    print("OTHER", e)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"x", ("127.0.0.1", {udp_port}))
            print("SENT")
            # Its own loopback works: a server and a client both in there.
            srv = socket.create_server(("127.0.0.1", 0))
            c = socket.create_connection(srv.getsockname(), timeout=5)
            conn, _ = srv.accept()
            c.sendall(b"ping")
            print("OWN", conn.recv(4).decode())
        """)
        r = self.pinfold(self.policy, ["sh", "-c", '"$0" -c "$1" && '
                                                  'unshare -rn sh -c \'ip link set lo up; "$0" -c "$1"\' "$0" "$2"',
                                       pftest.SANDBOX_PYTHON, host_step, netns_step], extra=[OPT])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split("\n")
        self.assertIn("HOST HTTP/1.1 200 OK", lines, r.stderr)
        self.assertEqual([x for x in lines if x and not x.startswith("HOST")],
                         ["REFUSED", "REFUSED", "SENT", "OWN ping"], r.stderr)
        # The host saw the steered request only, through the proxy.
        self.assertEqual([q["path"] for q in self.up.requests], ["/public/a"])
        self.assertEqual(listener.accepts, 0)
        self.assert_nothing_received(sink)
        self.assertEqual(len(r.audit_where(event="http", verdict="allow")), 1, r.audit)
        self.assertEqual(len(r.audit_where(event="private-netns", verdict="info")), 1, r.audit)
        self.assertFalse(r.audit_where(reason="connect from another network namespace"), r.audit)

    def test_host_namespace_is_still_steered(self):
        r = self.pinfold(self.policy, [pftest.SANDBOX_PYTHON, "-c", textwrap.dedent(f"""
            import socket
            for path in ("/public/a", "/private"):
                s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
                s.sendall(b"GET %s HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n" % path.encode())
                print(s.recv(4096).decode().split("\\r\\n")[0].split()[1])
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.sendto(b"x", ("127.0.0.1", 443))
                print("SENT")
            except PermissionError:
                print("EPERM")
        """)], extra=[OPT])
        self.assertEqual(r.stdout.split(), ["200", "403", "EPERM"], r.stderr)
        self.assertEqual(len(r.audit_where(event="http", verdict="allow")), 1, r.audit)
        self.assertEqual(len(r.audit_where(event="http", verdict="deny")), 1, r.audit)
        self.assertEqual(len(r.audit_where(event="sendmsg", verdict="deny")), 1, r.audit)
        self.assertEqual([q["path"] for q in self.up.requests], ["/public/a"])

    def test_setns_back_into_the_hosts_namespace_fails(self):
        # The way back out: a descriptor of the host's netns taken before
        # unshare, /proc/1/ns/net (the sandbox's init, in the host's netns),
        # and nsenter on that pid.
        r = self.pinfold(self.policy, ["sh", "-c", '"$0" -c "$1"; unshare -rn nsenter -t 1 -n true; echo "nsenter=$?"',
                                       pftest.SANDBOX_PYTHON, NS_HELPERS + textwrap.dedent(f"""
            host = os.open("/proc/self/ns/net", os.O_RDONLY)
            check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare")
            rc = libc.setns(host, CLONE_NEWNET)
            print("saved", "JOINED" if rc == 0 else errno.errorcode[ctypes.get_errno()])
            try:
                rc = libc.setns(os.open("/proc/1/ns/net", os.O_RDONLY), CLONE_NEWNET)
                print("pid1", "JOINED" if rc == 0 else errno.errorcode[ctypes.get_errno()])
            except OSError as e:
                print("pid1 open", errno.errorcode[e.errno])
        """)], extra=[OPT])
        # From inside its own user namespace it may not even open pid 1's
        # namespace files (ptrace access), let alone join.
        self.assertEqual(r.stdout.split("\n")[:2], ["saved EPERM", "pid1 open EACCES"], r.stderr)
        self.assertIn("nsenter=1", r.stdout, r.stderr)
        self.assertIn("nsenter: cannot open /proc/1/ns/net: Permission denied", r.stderr)
        self.assertEqual(self.up.requests, [])

    def test_refused_with_sandbox_off_as_root(self):
        marker = os.path.join(self.tmp, "ran")
        r = self.pinfold(self.policy, ["touch", marker], extra=[OPT, "--sandbox", "off"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--allow-private-netns cannot be used with --sandbox off when pinfold runs as root", r.stderr)
        self.assertFalse(os.path.exists(marker))
        self.assertEqual(self.up.requests, [])


if __name__ == "__main__":
    pftest.main()
