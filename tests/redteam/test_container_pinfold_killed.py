#!/usr/bin/env python3
"""Container mode: the job runs as pinfold's uid, so it can kill pinfold.
That must leave the container without network, never with free network:
the programs are attached without links (nothing to pin them in), so they
outlive pinfold and keep steering into a proxy that is gone. A second
pinfold in the same container refuses to start on top of them."""
import errno
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

# Both jobs below: whether a process is gone, and one request through the
# proxy's steering (its status line, "closed", or the errno).
JOB_PROBES = """
def gone(pid):
    # Dead, or a zombie its parent (the test) has not reaped yet.
    try:
        with open(f"/proc/{{pid}}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True

def try_get(path):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", {port}))
        s.sendall(b"GET " + path + b" HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nConnection: close\\r\\n\\r\\n")
        return s.recv(4096).split(b"\\r\\n")[0].decode() or "closed"
    except OSError as e:
        return e.errno
"""

# The job: a grandchild that leaves the process tree, then pinfold killed
# by its child; the grandchild tries the network once pinfold is gone.
JOB = """
import json, os, socket, sys, time
pinfold = os.getppid()
""" + JOB_PROBES + """
if os.fork() == 0:
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if os.fork() == 0:
        out = {{}}
        for _ in range(200):               # at most 10 s for pinfold to die
            if gone(pinfold):
                break
            time.sleep(0.05)
        out["pinfold_gone"] = gone(pinfold)
        time.sleep(0.3)                     # the proxy's stop follows pinfold's death
        sys.path.insert(0, {lib!r})
        import bpfsys
        cg = os.open({cgroup_mount!r}, os.O_RDONLY | os.O_DIRECTORY)
        out["detach"] = sorted({{bpfsys.prog_detach(cg, bpfsys.BPF_CGROUP_INET4_CONNECT, fd)[1]
                                 for fd in (0, -1 & 0xffffffff, cg)}}, key=str)
        out["tcp"] = try_get(b"/after-kill")
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.sendto(b"after-kill", ("127.0.0.1", {udp_port}))
            out["udp"] = "sent"
        except OSError as e:
            out["udp"] = e.errno
        tmp = {out!r} + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.rename(tmp, {out!r})
        os._exit(0)
    os._exit(0)
time.sleep(0.2)
os.kill(pinfold, 9)
time.sleep(30)                              # killed with the rest at the end
"""


# A process whose main thread has exited (state Z) while another thread
# lives on, waiting for the run to end to try the network.
HALF_DEAD = """
import ctypes, json, os, socket, sys, threading, time
pinfold = int(sys.argv[1])
""" + JOB_PROBES + """
def later():
    for _ in range(300):                     # at most 15 s for the run to end
        if gone(pinfold):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    out = {{"pinfold_gone": gone(pinfold), "tcp": try_get(b"/half-dead")}}
    with open({out!r}, "w") as f:
        json.dump(out, f)
    os._exit(0)

threading.Thread(target=later).start()
time.sleep(0.1)
ctypes.CDLL(None).pthread_exit(None)       # the main thread only
"""


class PinfoldKilledInContainer(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.ct = container_env.ContainerCgroup("killed")
        self.up = self.server("127.0.0.1")
        self.udp = __import__("socket").socket(__import__("socket").AF_INET, __import__("socket").SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.1)
        self.policy = self.write_policy(f"""
            name: container-killed
            rules:
              - name: read
                endpoint: http://127.0.0.1:{self.up.port}/items/*
                methods: [GET]
        """)

    def tearDown(self):
        self.ct.close()
        self.udp.close()
        super().tearDown()

    def test_killing_pinfold_leaves_the_container_without_network(self):
        out = os.path.join(self.tmp, "outcome.json")
        job = JOB.format(port=self.up.port, udp_port=self.udp.getsockname()[1], out=out, lib=LIB,
                         cgroup_mount=pftest.cgroup2_root())
        r = container_env.run_pinfold(self, self.ct, self.policy, [pftest.SANDBOX_PYTHON, "-c", job],
                                      check_clean=False)
        self.assertEqual(r.returncode, -9, r.stderr)
        deadline = time.monotonic() + 20
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(out) as f:
            outcome = json.load(f)
        self.assertTrue(outcome["pinfold_gone"], outcome)
        # Without CAP_NET_ADMIN and without the programs' fds, no detach.
        self.assertNotIn(None, outcome["detach"], outcome)
        # Steered into the proxy's port, where nothing listens any more.
        self.assertEqual(outcome["tcp"], errno.ECONNREFUSED, outcome)
        self.assertEqual(self.up.requests, [])
        try:
            data = self.udp.recv(100)
        except OSError:
            data = None
        self.assertIsNone(data, "a datagram left the container after pinfold died")
        # What pinfold said at start about this.
        reasons = [a["reason"] for a in r.audit_where(event="container-mode")]
        self.assertTrue(any("if pinfold is killed they stay" in x for x in reasons), reasons)

        # The programs are still there: another pinfold will not run on top.
        again = container_env.run_pinfold(self, self.ct, self.policy, ["true"], check_clean=False)
        self.assertEqual(again.returncode, 125, again.stderr)
        self.assertIn("already attached to this container's cgroup", again.stderr)

    def test_a_process_whose_main_thread_exited_is_killed_at_the_end(self):
        # Its /proc state is Z, but its other threads run: the end of the run
        # must kill it before the programs go.
        out = os.path.join(self.tmp, "half-dead.json")
        code = HALF_DEAD.format(port=self.up.port, out=out)
        script = os.path.join(self.tmp, "half_dead.py")
        with open(script, "w") as f:
            f.write(code)
        r = container_env.run_pinfold(
            self, self.ct, self.policy,
            ["sh", "-c", f"{pftest.SANDBOX_PYTHON} {script} $PPID </dev/null >/dev/null 2>&1 & sleep 1"],
            check_clean=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.monotonic() + 3
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(out), open(out).read() if os.path.exists(out) else "")
        self.assertEqual(self.up.requests, [])
        self.assertEqual(self.ct.pids(), [])


if __name__ == "__main__":
    pftest.main()
