#!/usr/bin/env python3
"""The host's loopback services and the sandbox's own: a sandbox shares the
host's network namespace, so every loopback port of the host is one connect
away. Host services are steered like any destination; servers the sandbox
starts itself keep working for it, and nothing outside the sandbox can reach
them. Each test asserts the outcome and the audit record."""
import os
import select
import socket
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402


class LocalServices(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: redteam-local
            rules:
              - name: public
                endpoint: http://127.0.0.1:{self.up.port}/public/**
        """)

    def run_py(self, code):
        return self.python_in_sandbox(self.policy, code)

    def test_host_loopback_service_not_in_policy_is_never_reached(self):
        # A host service speaking anything (here: a database-like TCP port).
        host = self.raw_listener("127.0.0.1")
        r = self.run_py(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {host.port}), timeout=5)
            s.sendall(b"\\x00\\x01PING\\r\\n\\r\\n")
            print(repr(s.recv(100)))
        """)
        self.assertEqual(host.accepts, 0)
        self.assertIn("b''", r.stdout, r.stderr)
        closed = r.audit_where(verdict="deny", destination=f"127.0.0.1:{host.port}")
        self.assertEqual(len(closed), 1, r.audit)

    def test_host_loopback_http_service_only_allowed_paths(self):
        r = self.pinfold(self.policy, ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-o", "/dev/null",
                                       "-w", "%{http_code} ", self.up.url("/public/x"), self.up.url("/admin")])
        self.assertEqual(r.stdout.split(), ["200", "403"], r.stderr)
        self.assertEqual([q["path"] for q in self.up.requests], ["/public/x"])
        self.assertEqual(len(r.audit_where(event="http", verdict="deny", path="/admin")), 1, r.audit)

    def test_sandbox_own_loopback_server_is_reachable(self):
        # A test suite inside the sandbox starts a server and talks to it:
        # TCP on 127.0.0.1 and [::1], and UDP. It must just work, directly.
        r = self.run_py("""
            import socket, threading
            def serve(family, host):
                srv = socket.socket(family, socket.SOCK_STREAM)
                srv.bind((host, 0)); srv.listen(4)
                def loop():
                    c, _ = srv.accept(); c.sendall(b"own:" + c.recv(10)); c.close()
                threading.Thread(target=loop, daemon=True).start()
                return srv.getsockname()[1]
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                port = serve(family, host)
                c = socket.create_connection((host, port), timeout=5)
                c.sendall(b"hi"); print(c.recv(100).decode())
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
            v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.settimeout(5)
            v.sendto(b"dgram", u.getsockname()); print(u.recvfrom(100)[0].decode())
        """)
        self.assertEqual(r.stdout.split(), ["own:hi", "own:hi", "dgram"], r.stderr)
        self.assertEqual(r.audit_where(verdict="deny"), [], r.audit)

    def test_wildcard_bind_is_narrowed_to_loopback(self):
        r = self.run_py("""
            import socket
            s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[0])
            s6 = socket.socket(socket.AF_INET6); s6.bind(("::", 0)); print(s6.getsockname()[0])
        """)
        self.assertEqual(r.stdout.split(), ["127.0.0.1", "::1"], r.stderr)

    def test_bind_to_a_non_loopback_address_is_refused(self):
        # 192.0.2.1 is not configured here, so bind would fail anyway with
        # EADDRNOTAVAIL; the hook answers first with EPERM, and audits.
        r = self.run_py("""
            import socket, errno
            for family, addr in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
                s = socket.socket(family)
                try:
                    s.bind((addr, 0)); print("BOUND")
                except OSError as e:
                    print(errno.errorcode[e.errno])
        """)
        self.assertEqual(r.stdout.split(), ["EPERM", "EPERM"], r.stderr)
        self.assertEqual(len(r.audit_where(event="bind", verdict="deny")), 2, r.audit)

    def test_host_process_cannot_connect_to_a_server_the_sandbox_started(self):
        code = textwrap.dedent("""
            import socket, sys
            srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)
            srv.settimeout(8)
            print(srv.getsockname()[1], flush=True)
            sys.stdin.readline()   # the host has tried
            srv.settimeout(0.5)
            try:
                c, peer = srv.accept(); print("ACCEPTED", peer)
            except socket.timeout:
                print("NOBODY")
        """)
        audit = os.path.join(self.tmp, "a.jsonl")
        argv = [pftest.PINFOLD, "run", "--policy", self.policy, "--audit", audit,
                "--", pftest.SANDBOX_PYTHON, "-c", code]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            self.assertTrue(ready, "the sandboxed server did not start")
            port = int(proc.stdout.readline())
            c = socket.socket()
            c.settimeout(2)
            with self.assertRaises(OSError):
                c.connect(("127.0.0.1", port))   # its SYNs are dropped
            c.close()
            out, err = proc.communicate(input="\n", timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertIn("NOBODY", out, err)
        result = pftest.Result(proc, audit)
        inbound = result.audit_where(event="inbound", verdict="deny")
        self.assertTrue(inbound, result.audit)
        pftest.assert_clean(self, proc.pid)

    def test_sandbox_cannot_impersonate_a_host_service_on_another_loopback_address(self):
        # The host holds 127.0.0.1:P. The sandbox binds 127.0.0.2:P and
        # connects to 127.0.0.1:P hoping to go direct: it is steered, and
        # the proxy closes the non-HTTP connection; the host never sees it.
        host = self.raw_listener("127.0.0.1")
        r = self.run_py(f"""
            import socket
            mine = socket.socket(); mine.bind(("127.0.0.2", {host.port})); mine.listen(1)
            s = socket.create_connection(("127.0.0.1", {host.port}), timeout=5)
            s.sendall(b"\\x00\\x01binary\\r\\n\\r\\n")
            print(repr(s.recv(100)))
        """)
        self.assertEqual(host.accepts, 0, r.stderr)
        self.assertEqual(len(r.audit_where(verdict="deny", destination=f"127.0.0.1:{host.port}")), 1, r.audit)

    def test_abstract_unix_socket_of_the_host_is_refused(self):
        # Abstract unix sockets ignore the file system and the network
        # namespace is shared: the cgroup connect_unix hook (6.7) refuses.
        pftest.require_kernel(self, "connect_unix")
        name = f"\0pinfold-test-{os.getpid()}"
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(name)
        srv.listen(1)
        srv.settimeout(0.1)
        try:
            r = self.python_in_sandbox(self.policy, f"""
                import socket, errno
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect({name!r}); print("CONNECTED")
                except OSError as e:
                    print(errno.errorcode[e.errno])
            """)
            try:
                srv.accept()
                reached = True
            except socket.timeout:
                reached = False
        finally:
            srv.close()
        self.assertFalse(reached)
        self.assertEqual(r.stdout.split(), ["EPERM"], r.stderr)
        refused = [a for a in r.audit_where(event="connect", verdict="deny") if "abstract unix" in a["reason"]]
        self.assertEqual(len(refused), 1, r.audit)


if __name__ == "__main__":
    pftest.main()
