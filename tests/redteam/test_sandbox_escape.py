#!/usr/bin/env python3
"""Attempts to get out of the namespace sandbox, or to reach what the
cgroup hooks cannot see. Each asserts that the attempt fails and that it
was audited (seccomp refusals are answered and audited by pinfold)."""
import os
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

PY = pftest.SANDBOX_PYTHON
WS_UID = 64000

# ctypes prelude: raw system calls, so that libc or Python cannot refuse
# (or "fix") an argument before the kernel sees it.
RAW = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def raw(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return "OK" if r >= 0 else errno.errorcode[ctypes.get_errno()]
"""


class Escape(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        os.chmod(self.tmp, 0o755)
        self.ws = os.path.join(self.tmp, "ws")
        os.mkdir(self.ws)
        os.chown(self.ws, WS_UID, WS_UID)
        self.policy = self.write_policy(f"""
            name: redteam-sandbox
            rules:
              - name: public
                endpoint: http://127.0.0.1:{self.up.port}/public/**
        """)

    def py(self, code, extra=()):
        return self.pinfold(self.policy, [PY, "-c", RAW + textwrap.dedent(code)], extra=["--workspace", self.ws, *extra])

    def refused_calls(self, r):
        return [rec["reason"] for rec in r.audit_where(event="syscall", verdict="deny")]

    def test_packet_socket_is_refused_and_audited(self):
        r = self.py("""
            import socket
            try:
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0x0300)
                print("OPENED")
            except PermissionError:
                print("EPERM")
        """)
        self.assertEqual(r.stdout.strip(), "EPERM", r.stderr)
        self.assertEqual(len([x for x in self.refused_calls(r) if "socket(family 17," in x]), 1, r.audit)

    def test_families_the_hooks_cannot_see_are_refused(self):
        # vsock, AF_ALG, Bluetooth, netlink sock_diag (lists the host's sockets),
        # netlink audit; and AF_PACKET with high bits set, which the kernel
        # truncates to 17 while a careless 64-bit comparison would not match.
        r = self.py("""
            attempts = [(40, 1, 0), (38, 5, 0), (31, 3, 0), (16, 3, 4), (16, 3, 9), (0x100000011, 3, 0)]
            for family, kind, proto in attempts:
                print(raw(41, family, kind, proto))
        """)
        self.assertEqual(r.stdout.split(), ["EPERM"] * 6, r.stderr)
        reasons = self.refused_calls(r)
        self.assertEqual(len(reasons), 6, r.audit)
        self.assertTrue(all(x.startswith("refused by the sandbox's seccomp filter: socket(") for x in reasons), reasons)

    def test_routing_netlink_still_works_for_libc(self):
        r = self.py("""
            import socket
            print(len(socket.if_nameindex()) > 0)
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            print("ROUTE_OK")
        """)
        self.assertEqual(r.stdout.split(), ["True", "ROUTE_OK"], r.stderr)
        self.assertEqual(self.refused_calls(r), [])

    def test_mount_is_refused_even_in_a_nested_user_namespace(self):
        # Root of a nested user namespace holds CAP_SYS_ADMIN there; the
        # filter refuses mount all the same (unshare -m itself fails: it
        # must change the propagation of /, a mount call).
        r = self.pinfold(self.policy, ["unshare", "-r", PY, "-c", RAW + textwrap.dedent("""
            print(raw(165, b"none", b"/mnt", b"tmpfs", 0, 0))
            print(raw(166, b"/proc", 2))
        """)], extra=["--workspace", self.ws])
        self.assertEqual(r.stdout.split(), ["EPERM", "EPERM"], r.stderr)
        reasons = self.refused_calls(r)
        self.assertTrue(any(x.endswith(": mount") for x in reasons), reasons)
        self.assertTrue(any(x.endswith(": umount2") for x in reasons), reasons)

    def test_ptrace_is_refused(self):
        r = self.py("""
            print(raw(101, 16, 1, 0, 0))   # PTRACE_ATTACH to the sandbox's init
            print(raw(101, 0, 0, 0, 0))    # PTRACE_TRACEME
            print(raw(310, 1, 0, 1, 0, 1, 0))  # process_vm_readv
        """)
        self.assertEqual(r.stdout.split(), ["EPERM"] * 3, r.stderr)
        reasons = self.refused_calls(r)
        self.assertEqual(sum(x.endswith(": ptrace") for x in reasons), 2, reasons)
        self.assertEqual(sum(x.endswith(": process_vm_readv") for x in reasons), 1, reasons)

    def test_descriptors_of_the_sandbox_init_are_out_of_reach(self):
        # The sandbox's init is pinfold's code and keeps what pinfold had
        # open when it was cloned: the audit log, the proxy's stop pipe.
        # Through /proc/1/fd they would be open()ed anew by whoever may read
        # the init like a debugger; its change to the inner uid made it
        # undumpable, so no one in the sandbox may.
        r = self.py("""
            import os
            try:
                print(len(os.listdir("/proc/1/fd")))
            except OSError as e:
                print(errno.errorcode[e.errno])
            opened = 0
            for n in range(64):
                for flags in (os.O_WRONLY | os.O_APPEND, os.O_RDONLY):
                    try:
                        os.close(os.open(f"/proc/1/fd/{n}", flags))
                        opened += 1
                    except OSError:
                        pass
            print(opened)
        """)
        self.assertEqual(r.stdout.split(), ["EACCES", "0"], r.stderr)

    def test_bpf_and_pins_are_out_of_reach(self):
        r = self.py("""
            import os
            print(os.path.exists("/sys/fs/bpf/pinfold"))
            attr = ctypes.create_string_buffer(b"/sys/fs/bpf/pinfold", 128)
            print(raw(321, 7, attr, 128))   # BPF_OBJ_GET
        """)
        self.assertEqual(r.stdout.split(), ["False", "EPERM"], r.stderr)
        self.assertTrue(any(x.endswith(": bpf") for x in self.refused_calls(r)), r.audit)

    def test_terminal_injection_is_refused(self):
        r = self.py("""
            c = ctypes.c_char(b"x")
            print(raw(16, 0, 0x5412, ctypes.byref(c)))   # ioctl(0, TIOCSTI)
        """)
        self.assertEqual(r.stdout.strip(), "EPERM", r.stderr)
        self.assertTrue(any("ioctl(request 0x5412)" in x for x in self.refused_calls(r)), r.audit)

    def test_kernel_keyring_and_perf_are_refused(self):
        r = self.py("""
            print(raw(250, 0, 0, 0, 0, 0))       # keyctl
            attr = ctypes.create_string_buffer(128)
            print(raw(298, attr, 0, -1, -1, 0))  # perf_event_open
            print(raw(323, 0))                   # userfaultfd
        """)
        self.assertEqual(r.stdout.split(), ["EPERM"] * 3, r.stderr)
        reasons = self.refused_calls(r)
        for name in ("keyctl", "perf_event_open", "userfaultfd"):
            self.assertTrue(any(x.endswith(": " + name) for x in reasons), (name, reasons))

    def test_killing_everything_in_reach_spares_pinfold_and_the_proxy(self):
        # kill(-1) reaches every process the caller may signal: inside the
        # sandbox that is only the sandbox. The proxy still polices after it.
        r = self.py(f"""
            import os, signal, socket
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            s = socket.create_connection(("127.0.0.1", {self.up.port}), timeout=5)
            s.sendall(b"GET /private HTTP/1.1\\r\\nHost: 127.0.0.1:{self.up.port}\\r\\n\\r\\n")
            print(s.recv(4096).decode().split("\\r\\n")[0])
        """)
        self.assertIn("403", r.stdout, r.stderr)
        self.assertEqual(len(r.audit_where(event="http", verdict="deny")), 1, r.audit)
        self.assertEqual(self.up.requests, [])

    def test_workspace_owners_session_sockets_are_out_of_reach(self):
        """A root pinfold runs the command as the workspace's owner on the
        host: that user's /run/user/<uid> (session bus, ssh/gpg agents, a
        podman API socket that would start containers outside the sandbox's
        cgroup, unpoliced) is hidden, so its sockets cannot be dialled."""
        import socket
        made = [d for d in ("/run/user", f"/run/user/{WS_UID}") if not os.path.exists(d)]
        for d in made:
            os.mkdir(d, 0o755 if d == "/run/user" else 0o700)
        os.chown(f"/run/user/{WS_UID}", WS_UID, WS_UID)
        path = f"/run/user/{WS_UID}/pinfold-test-agent.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(path)
            os.chown(path, WS_UID, WS_UID)
            server.listen(4)
            r = self.py(f"""
                import socket
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect({path!r})
                    print("CONNECTED")
                except OSError as e:
                    print(errno.errorcode[e.errno])
                try:
                    print(sorted(os.listdir("/run/user")))
                except OSError as e:
                    print(errno.errorcode[e.errno])
            """)
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.split("\n")
            self.assertNotEqual(lines[0], "CONNECTED")
            self.assertIn(lines[0], ("ENOENT", "EACCES"))
            self.assertIn(lines[1], ("[]", "EACCES"))
        finally:
            server.close()
            if os.path.exists(path):
                os.unlink(path)
            for d in reversed(made):
                os.rmdir(d)

    def test_proxy_memory_and_run_state_are_unreachable(self):
        # The run CA's key exists only in the proxy's memory: find the proxy's
        # host pid and try its /proc entry from inside.
        proc = subprocess.Popen([pftest.PINFOLD, "run", "--policy", self.policy, "--workspace", self.ws, "--",
                                 "sh", "-c", "touch ready; while [ ! -e go ]; do sleep 0.05; done; "
                                             "exec " + PY + " probe.py"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(self.ws, "ready")) and time.monotonic() < deadline:
            time.sleep(0.02)
        children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        proxy = [p for p in children if open(f"/proc/{p}/comm").read().strip() == "pinfold-proxy"]
        self.assertEqual(len(proxy), 1, children)
        with open(os.path.join(self.ws, "probe.py"), "w") as f:
            f.write(textwrap.dedent(f"""
                import os, subprocess
                for path in ("/proc/{proxy[0]}/mem", "/proc/{proc.pid}/environ", "/run/pinfold"):
                    try:
                        open(path, "rb").read(16)
                        print("READ", path)
                    except OSError as e:
                        print("REFUSED", e.errno)
                names = [open(f"/proc/{{p}}/comm").read().strip() for p in os.listdir("/proc") if p.isdigit()]
                print("proxy-visible" if "pinfold-proxy" in names else "proxy-invisible")
                out = subprocess.run(["grep", "-rlE", "-----BEGIN [A-Z ]*PRIVATE KEY-----", "/run", "/tmp", "/etc/ssl"],
                                     capture_output=True, text=True).stdout
                print("keyfiles:", out.split())
            """))
        open(os.path.join(self.ws, "go"), "w").close()
        out, err = proc.communicate(timeout=60)
        lines = out.splitlines()
        self.assertEqual(len([x for x in lines if x.startswith("REFUSED")]), 3, out + err)
        self.assertIn("proxy-invisible", lines)
        self.assertIn("keyfiles: []", lines)
        pftest.assert_clean(self, proc.pid)


if __name__ == "__main__":
    pftest.main()
