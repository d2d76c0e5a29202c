#!/usr/bin/env python3
"""Container mode's exemption of pinfold's own proxy and resolver cannot be
forged or borrowed by the job. The proxy shares the job's cgroup and marks
its own sockets in exempt_map through an inherited map fd; the job runs in
the same container as the same uid, without capabilities.

Each attempt must fail, and the connection the job then makes must still be
steered into the proxy and audited."""
import json
import os
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import container_env  # noqa: E402
import pftest  # noqa: E402

LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lib"))

# Runs inside the job: every way the job could get or make an exempt socket.
JOB = """
import json, os, socket, sys
sys.path.insert(0, {lib!r})
import bpfsys
out = {{}}
def fds_of(pid):
    try:
        names = os.listdir(f"/proc/{{pid}}/fd")
    except OSError as e:
        return type(e).__name__
    found = []
    for n in names:
        try:
            found.append(os.readlink(f"/proc/{{pid}}/fd/{{n}}"))
        except OSError:
            pass  # the fd listdir itself used
    return found
out["own_bpf_fds"] = [t for t in fds_of("self") if "bpf" in t]
out["next_map_id"] = bpfsys.map_next_id(0)[1]
out["map_by_id"] = sorted({{bpfsys.map_fd_by_id(i)[1] for i in range(1, 64)}}, key=str)
out["load_prog"] = bpfsys.load_connect4_program()[1]
pinfold = os.getppid()
proxy = None
for pid in os.listdir("/proc"):
    try:
        with open(f"/proc/{{pid}}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{{pid}}/comm") as f:
            comm = f.read().strip()
    except OSError:
        continue
    if comm == "pinfold-proxy" and int(fields[1]) == pinfold:
        proxy = int(pid)
out["found_proxy"] = proxy is not None
for name, pid in (("proxy", proxy), ("pinfold", pinfold)):
    # Listing the fd directory is allowed (a non-dumpable process's /proc
    # entries belong to root, our uid); following or opening an fd is not.
    outcomes = set()
    for n in range(0, 32):
        for probe in (os.readlink, lambda p: os.close(os.open(p, os.O_RDONLY))):
            try:
                probe(f"/proc/{{pid}}/fd/{{n}}")
                outcomes.add("ok")
            except FileNotFoundError:
                pass
            except OSError as e:
                outcomes.add(type(e).__name__)
    out[name + "_fd_open"] = sorted(outcomes)
    pidfd, err = bpfsys.pidfd_open(pid)
    out[name + "_getfd"] = sorted({{bpfsys.pidfd_getfd(pidfd, n)[1] for n in range(0, 32)}}, key=str) if pidfd >= 0 else err
    out[name + "_ptrace"] = bpfsys.ptrace_attach(pid)[1]
s = socket.socket()
marks = {{bpfsys.mark_socket(fd, s.fileno(), bpfsys.PF_EXEMPT_CONNECT)[1] for fd in range(0, 64)}}
out["self_mark"] = sorted(marks, key=str)
# The connection after all that: still into the proxy.
s.settimeout(10)
s.connect(("127.0.0.1", {port}))
s.sendall(b"GET /forged HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nConnection: close\\r\\n\\r\\n")
out["response"] = s.recv(4096).split(b"\\r\\n")[0].decode()
print(json.dumps(out))
"""

# Privileged helper (the test, root): takes the proxy's exempt_map fd and
# plays a socket that leaked out of the proxy despite everything.
HELPER = """
import json, os, socket, sys
sys.path.insert(0, {lib!r})
import bpfsys
with open({procs!r}, "w") as f:
    f.write(str(os.getpid()))
with open(f"/proc/{proxy}/cmdline", "rb") as f:
    argv = f.read().split(b"\\0")
map_fd_number = int(argv[argv.index(b"--exempt-map-fd") + 1])
pidfd, err = bpfsys.pidfd_open({proxy})
map_fd, err = bpfsys.pidfd_getfd(pidfd, map_fd_number)
assert map_fd >= 0, err
out = {{}}
def request(s, path):
    s.sendall(("GET " + path + " HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nConnection: close\\r\\n\\r\\n").encode())
    try:
        return s.recv(4096).split(b"\\r\\n")[0].decode()
    except OSError as e:
        return type(e).__name__
s = socket.socket()
s.settimeout(10)
out["mark"] = bpfsys.mark_socket(map_fd, s.fileno(), bpfsys.PF_EXEMPT_CONNECT)[1]
out["mark_again"] = bpfsys.mark_socket(map_fd, s.fileno(), bpfsys.PF_EXEMPT_CONNECT)[1]
s.connect(("127.0.0.1", {port}))
out["first"] = request(s, "/first")
out["disconnect"] = bpfsys.disconnect(s)[1]
s.connect(("127.0.0.1", {port}))
out["second"] = request(s, "/second")
r = socket.socket()
r.settimeout(10)
bpfsys.mark_socket(map_fd, r.fileno(), bpfsys.PF_EXEMPT_REPLY)
r.connect(("127.0.0.1", {port}))
out["reply_mark_connect"] = request(r, "/reply-mark")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
bpfsys.mark_socket(map_fd, u.fileno(), bpfsys.PF_EXEMPT_REPLY)
try:
    u.sendto(b"x", ("192.0.2.1", 9))
    out["reply_mark_offhost"] = "sent"
except OSError as e:
    out["reply_mark_offhost"] = type(e).__name__
print(json.dumps(out))
"""


def children_of(pid):
    """{comm: pid} of the direct children of `pid`."""
    return {name: child for child, name, ppid in pftest.processes() if ppid == pid}


def wait_for_children(pid, names, timeout=30.0):
    """Waits (bounded) until `pid` has children running each of `names`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children_of(pid)
        if all(n in found for n in names):
            return found
        time.sleep(0.05)
    raise AssertionError(f"{names} did not start under {pid}")


class ContainerExemption(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.ct = container_env.ContainerCgroup("exempt")
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: container-exemption
            rules:
              - name: read
                endpoint: http://127.0.0.1:{self.up.port}/items/*
                methods: [GET]
        """)

    def tearDown(self):
        self.ct.close()
        super().tearDown()

    def test_the_job_can_neither_get_nor_make_an_exempt_socket(self):
        code = JOB.format(lib=LIB, port=self.up.port)
        r = container_env.run_pinfold(self, self.ct, self.policy, [pftest.SANDBOX_PYTHON, "-c", code])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.splitlines()[-1])
        self.assertEqual(out["own_bpf_fds"], [], "the job inherited a BPF object")
        # No map (and so no exempt_map) by id: needs CAP_SYS_ADMIN.
        self.assertEqual(out["next_map_id"], "EPERM")
        self.assertEqual(out["map_by_id"], ["EPERM"])
        # No program of its own to run after pinfold's and undo the rewrite.
        self.assertEqual(out["load_prog"], "EPERM")
        self.assertTrue(out["found_proxy"], out)
        for who in ("proxy", "pinfold"):
            self.assertEqual(out[f"{who}_fd_open"], ["PermissionError"], out)
            self.assertEqual(out[f"{who}_getfd"], ["EPERM"], out)
            self.assertEqual(out[f"{who}_ptrace"], "EPERM", out)
        self.assertNotIn(None, out["self_mark"], "the job marked its own socket")
        self.assertIn("403", out["response"])
        denied = r.audit_where(event="http", verdict="deny", path="/forged")
        self.assertEqual(len(denied), 1, r.audit)
        self.assertEqual(self.up.requests, [])

    def test_a_leaked_mark_admits_one_connect_and_reply_marks_none(self):
        go = os.path.join(self.tmp, "go")
        wait = textwrap.dedent(f"""
            import os, time
            for _ in range(600):
                if os.path.exists({go!r}):
                    break
                time.sleep(0.05)
        """)
        audit = os.path.join(self.tmp, "audit.jsonl")
        argv = [*container_env.prefix(self.ct), pftest.PINFOLD, "run", "--policy", self.policy, "--audit", audit,
                "--sandbox", "off", "--", pftest.SANDBOX_PYTHON, "-c", wait]
        run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
        try:
            # The job runs once the proxy is ready and the sandbox configured.
            proxy = wait_for_children(run.pid, ["pinfold-proxy", "python3"])["pinfold-proxy"]
            helper = subprocess.run(
                [sys.executable, "-c", HELPER.format(lib=LIB, procs=os.path.join(self.ct.path, "cgroup.procs"),
                                                     proxy=proxy, port=self.up.port)],
                capture_output=True, text=True, timeout=60)
        finally:
            open(go, "w").close()
            stdout, stderr = run.communicate(timeout=pftest.RUN_TIMEOUT)
        self.assertEqual(helper.returncode, 0, helper.stderr)
        self.assertEqual(run.returncode, 0, stderr)
        pftest.assert_clean(self, run.pid)
        out = json.loads(helper.stdout.splitlines()[-1])
        result = pftest.Result(run, audit)
        # The mark works (this is how the proxy reaches upstream) ...
        self.assertIsNone(out["mark"])
        self.assertEqual(out["mark_again"], "EEXIST")
        self.assertIn("200", out["first"])   # straight to the upstream (the proxy would refuse /first)
        # ... once: disconnected and connected again, the socket is steered.
        self.assertIsNone(out["disconnect"])
        self.assertIn("403", out["second"])
        self.assertIn("403", out["reply_mark_connect"])
        self.assertEqual(out["reply_mark_offhost"], "PermissionError")
        self.assertEqual([q["path"] for q in self.up.requests], ["/first"])
        self.assertEqual(sorted(a["path"] for a in result.audit_where(event="http", verdict="deny")),
                         ["/reply-mark", "/second"], result.audit)
        self.assertEqual(len(result.audit_where(event="sendmsg", verdict="deny")), 1, result.audit)


if __name__ == "__main__":
    pftest.main()
