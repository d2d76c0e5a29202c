#!/usr/bin/env python3
"""Fail closed: when a part of pinfold goes away, the sandbox loses the
network rather than gaining a direct path; and kernel paths that skip the
obvious connect() (TCP Fast Open, moving to another cgroup) are steered or
refused all the same. Each test asserts the outcome and its audit record."""
import os
import select
import signal
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402


def children_named(pid, comm):
    return [p for p, name, ppid in pftest.processes() if ppid == pid and name == comm]


class FailClosed(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: redteam-fail-closed
            rules:
              - name: public
                endpoint: http://127.0.0.1:{self.up.port}/public/**
        """)

    def test_killing_the_proxy_leaves_no_direct_path(self):
        code = textwrap.dedent(f"""
            import socket, sys, time
            def get():
                try:
                    s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
                    s.sendall(b"GET /public/x HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n")
                    return s.recv(100).split(b"\\r\\n")[0].decode() or "CLOSED"
                except OSError as e:
                    return type(e).__name__
            print(get(), flush=True)
            sys.stdin.readline()          # the proxy is dead now
            print(get(), flush=True)
            # Stay until pinfold ends the run: a command that exits by
            # itself here would race the proxy's exit notification.
            time.sleep(60)
        """)
        audit = os.path.join(self.tmp, "a.jsonl")
        argv = [pftest.PINFOLD, "run", "--policy", self.policy, "--audit", audit,
                "--", pftest.SANDBOX_PYTHON, "-c", code]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            self.assertTrue(ready)
            first = proc.stdout.readline().strip()
            proxies = children_named(proc.pid, "pinfold-proxy")
            self.assertEqual(len(proxies), 1)
            os.kill(proxies[0], signal.SIGKILL)
            # pinfold ends the run on its own; the command may or may not
            # get to try once more before it is killed with the sandbox.
            try:
                proc.stdin.write("\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertIn("200", first)
        self.assertEqual(proc.returncode, 125, err)
        self.assertIn("proxy exited", err)
        second = out.strip()
        self.assertNotIn("200", second)
        self.assertEqual(len(self.up.requests), 1)   # only the request made before the kill
        result = pftest.Result(proc, audit)
        self.assertEqual(len(result.audit_where(event="proxy", verdict="deny")), 1, result.audit)
        pftest.assert_clean(self, proc.pid)

    def test_tcp_fast_open_both_apis_are_steered(self):
        r = self.python_in_sandbox(self.policy, f"""
            import socket
            req = b"GET /private HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\nConnection: close\\r\\n\\r\\n"
            # 1. sendto(MSG_FASTOPEN): connect and data in one call.
            s = socket.socket()   # blocking: with a timeout sendto answers EINPROGRESS
            s.sendto(req, socket.MSG_FASTOPEN, ("127.0.0.1", {self.up.port}))
            s.settimeout(5)
            print(s.recv(100).split(b"\\r\\n")[0].decode())
            # 2. TCP_FASTOPEN_CONNECT: connect() defers to the first write.
            s = socket.socket(); s.settimeout(5)
            s.setsockopt(socket.IPPROTO_TCP, 30, 1)
            s.connect(("127.0.0.1", {self.up.port})); s.sendall(req)
            print(s.recv(100).split(b"\\r\\n")[0].decode())
        """)
        self.assertEqual([l.split()[1] for l in r.stdout.splitlines()], ["403", "403"], r.stderr)
        self.assertEqual(self.up.requests, [])
        self.assertEqual(len(r.audit_where(event="http", verdict="deny", path="/private")), 2, r.audit)

    def test_static_binary_opening_its_own_socket_is_steered(self):
        # busybox-static: no libc of the system, no proxy variables, its own
        # socket() and connect(); the kernel hook steers it all the same.
        r = self.pinfold(self.policy, ["/usr/bin/busybox", "wget", "-q", "-O", "-",
                                       f"http://127.0.0.1:{self.up.port}/private"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("403", r.stderr)
        self.assertEqual(self.up.requests, [])
        self.assertEqual(len(r.audit_where(event="http", verdict="deny", path="/private")), 1, r.audit)

    def test_moving_to_another_cgroup_is_refused(self):
        # Writing its pid into a cgroup outside the sandbox (here the root)
        # must fail; the process stays steered.
        r = self.python_in_sandbox(self.policy, f"""
            import os, socket
            for path in ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/unified/cgroup.procs"):
                try:
                    with open(path, "w") as f:
                        f.write(str(os.getpid()))
                    print("MOVED")
                except OSError as e:
                    print(type(e).__name__)
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            s.sendall(b"GET /private HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n")
            print(s.recv(100).split(b"\\r\\n")[0].decode())
        """)
        lines = r.stdout.splitlines()
        self.assertNotIn("MOVED", lines, r.stderr)
        self.assertIn("403", lines[-1])
        self.assertEqual(len(r.audit_where(event="http", verdict="deny", path="/private")), 1, r.audit)


if __name__ == "__main__":
    pftest.main()
