"""Shared helpers of pinfold's integration and red-team tests.

Real binaries, real kernel hooks, real servers on loopback bound to port 0.
Every server and process a test starts is stopped by PID; every wait is
bounded in time.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.environ.get("PINFOLD_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
PINFOLD = os.environ.get("PINFOLD_BIN", os.path.join(BUILD_DIR, "bin", "pinfold"))
RUN_TIMEOUT = 60  # seconds for any one `pinfold run`
# The sandboxed command runs as an unprivileged uid: an interpreter under a
# private home (pyenv in /root) is out of its reach, the distribution's is not.
SANDBOX_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


# Kernel features a suite may need beyond what pinfold starts with, and the
# upstream version that brought each (docs/kernel-support.md). vmtests/run.sh
# sets PINFOLD_KERNEL_LACKS for an older guest kernel; elsewhere it is unset
# and every test runs: a missing feature then fails, never skips.
KERNEL_FEATURES = {
    "connect_unix": "6.7",    # cgroup connect_unix/sendmsg_unix hooks
    # Verifier fix "bpf: Fix narrow scalar spill onto 64-bit spilled scalar
    # slots" (b0e66977dc07, 6.13; 6.12.5 stable; not in Debian's 6.1.0-56):
    # before it a loader without CAP_PERFMON is refused any narrow stack
    # write into a slot holding a spilled scalar, which clang emits all over
    # pinfold's programs ("attempt to corrupt spilled pointer on stack").
    "narrow_spill_fix": "6.12.5",
    "landlock_net": "6.7",    # Landlock TCP bind/connect rules (ABI 4)
    "bpf_token": "6.9",       # BPF token from a delegated bpffs
    "landlock_scope": "6.12", # Landlock abstract-unix/signal scoping (ABI 6)
}


def kernel_lacks():
    """The features PINFOLD_KERNEL_LACKS declares missing; an unknown name is
    an error so a typo cannot turn a test into a silent skip."""
    names = {n.strip() for n in os.environ.get("PINFOLD_KERNEL_LACKS", "").split(",") if n.strip()}
    unknown = names - KERNEL_FEATURES.keys()
    if unknown:
        raise SystemExit(f"PINFOLD_KERNEL_LACKS names unknown features {sorted(unknown)}; "
                         f"known: {sorted(KERNEL_FEATURES)}")
    return names


def require_kernel(test, feature):
    """Skips `test` with the reason when the running kernel is declared to
    lack `feature`; otherwise returns and the test must find it working."""
    if feature not in KERNEL_FEATURES:
        raise KeyError(f"unknown kernel feature {feature!r}")
    if feature in kernel_lacks():
        test.skipTest(f"kernel {os.uname().release} lacks {feature} (needs {KERNEL_FEATURES[feature]}; "
                      "declared by PINFOLD_KERNEL_LACKS)")


def processes():
    """(pid, comm, ppid) of every process now (those that vanish while being
    read are left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        found.append((int(entry), name, int(stat[stat.rindex(")") + 2:].split()[1])))
    return found


def wait_for_descendant(pid, comm, timeout=30.0):
    """Waits until a descendant of `pid` runs `comm` (e.g. the sandboxed
    command is up, so pinfold has finished starting); True when it did.
    Slow machines (a TCG guest) make fixed sleeps unreliable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = {}
        for child, name, ppid in processes():
            children.setdefault(ppid, []).append((child, name))
        todo = [pid]
        for _ in range(10000):
            if not todo:
                break
            for child, name in children.get(todo.pop(), []):
                if name == comm:
                    return True
                todo.append(child)
        time.sleep(0.05)
    return False


def require_root():
    if os.geteuid() != 0:
        # Not a skip: these tests exist to exercise the real kernel hooks.
        raise SystemExit("integration tests need root (real cgroups and BPF hooks)")


# For code run in the sandbox (python_in_sandbox): prepend it, unindented,
# to read a response to its end.
SANDBOX_READ_ALL = """
def read_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
"""


class CountingServer:
    """An HTTP/1.1 server on a loopback address that counts what reaches it."""

    def __init__(self, host="127.0.0.1", body=b"hello from upstream\n"):
        outer = self
        self.accepts = 0
        self.requests = []
        self.body = body

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = self._read_chunked()
                elif length:
                    data = self.rfile.read(length)
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers), "body": data})
                payload = outer.body if self.command != "POST" else b"got " + str(len(data)).encode() + b"\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _read_chunked(self):
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _reply

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def verify_request(self, request, client_address):
                outer.accepts += 1
                return True

        self.server = Server((host, 0), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def authority(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path="/"):
        return f"http://{self.authority}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RawOrigin:
    """A loopback TCP server answering raw bytes, one thread per
    connection: for upstreams whose framing a test controls byte by byte
    (large bodies, bodies cut short). Subclasses implement serve(conn)."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve_and_close, args=(conn,), daemon=True).start()

    def _serve_and_close(self, conn):
        conn.settimeout(30)
        try:
            self.serve(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def serve(self, conn):
        raise NotImplementedError

    @staticmethod
    def read_head_fields(f):
        """Reads one head from the buffered reader F: (its first line, its
        fields as {lowercase name: value}, str); the first line is b"" at end
        of stream."""
        line = f.readline()
        fields = {}
        while line:
            h = f.readline()
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        return line, fields

    @staticmethod
    def read_head(f):
        """(first line, Content-Length or 0) of the next head from F."""
        line, fields = RawOrigin.read_head_fields(f)
        return line, int(fields.get("content-length", "0"))

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


class RawListener:
    """A TCP listener that only counts accepted connections."""

    def __init__(self, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepts += 1
                conn.close()
            except (socket.timeout, OSError):
                continue

    def close(self):
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


class Result:
    def __init__(self, proc, audit_path):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.audit = []
        if os.path.exists(audit_path):
            with open(audit_path) as f:
                self.audit = [json.loads(line) for line in f if line.strip()]

    def audit_where(self, **fields):
        return [r for r in self.audit if all(r.get(k) == v for k, v in fields.items())]


class PinfoldTestCase(unittest.TestCase):
    """Runs `pinfold run` and checks that nothing is left behind after each run."""

    def setUp(self):
        require_root()
        self.tmp = tempfile.mkdtemp(prefix="pinfold-test-")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, host="127.0.0.1", **kw):
        s = CountingServer(host, **kw)
        self.servers.append(s)
        return s

    def raw_listener(self, host="127.0.0.1"):
        s = RawListener(host)
        self.servers.append(s)
        return s

    def write_policy(self, text, name="policy.yaml"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def pinfold(self, policy, command, extra=(), timeout=RUN_TIMEOUT, check_clean=True, input_text=None,
                prefix=()):
        """`prefix`: a command that execs pinfold (setpriv dropping a capability),
        so the pid checked for leftovers is still pinfold's."""
        audit = os.path.join(self.tmp, f"audit-{time.monotonic_ns()}.jsonl")
        # The sandbox has a private /tmp: a checkout under /tmp (CI's clones)
        # would leave the test helpers the sandboxed commands run invisible.
        visible = [] if "--sandbox" in extra else ["--ro", TESTS_DIR]
        argv = [*prefix, PINFOLD, "run", "--policy", policy, "--audit", audit, *visible, *extra, "--", *command]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL)
        try:
            proc.stdout_text, proc.stderr_text = proc.communicate(input=input_text, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        proc.stdout, proc.stderr = proc.stdout_text, proc.stderr_text
        result = Result(proc, audit)
        result.pid = proc.pid
        if check_clean:
            assert_clean(self, proc.pid)
        return result

    def python_in_sandbox(self, policy, code, extra=()):
        return self.pinfold(policy, [SANDBOX_PYTHON, "-c", textwrap.dedent(code)], extra=extra)


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    raise RuntimeError("no cgroup2 mount")


def exclusive():
    """True when this suite owns the machine (scripts/test.sh, CI): then the
    leftover check is global. Developers running suites side by side get a
    check scoped to their own runs."""
    return os.environ.get("PINFOLD_TEST_EXCLUSIVE") == "1"


def leftovers(run_pid=None):
    """What a finished run must not leave: cgroups, pins, locks, proxies, links.
    With run_pid, only that run's; globally when the suite is exclusive."""
    found = []
    name = f"run-{run_pid}" if run_pid is not None else None
    cg = os.path.join(cgroup2_root(), "pinfold")
    if os.path.isdir(cg):
        found += [f"cgroup {cg}/{d}" for d in os.listdir(cg) if d.startswith("run-") and d == (name or d)]
    pins = "/sys/fs/bpf/pinfold"
    if os.path.isdir(pins):
        found += [f"pin {pins}/{d}" for d in os.listdir(pins) if d == (name or d)]
    if os.path.isdir("/run/pinfold"):
        # The kernel BTF subset (or its failure mark) stays for the boot
        # (loader/core_btf_cache.hpp).
        kept = lambda d: d.startswith("core-btf-")
        found += [f"lock /run/pinfold/{d}" for d in os.listdir("/run/pinfold")
                  if (d == f"{name}.lock" if name else not kept(d))]
    if run_pid is not None and not exclusive():
        return found
    procs = subprocess.run(["pgrep", "-x", "pinfold-proxy"], capture_output=True, text=True).stdout.split()
    found += [f"process pinfold-proxy {p}" for p in procs]
    links = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True)
    if links.returncode == 0 and links.stdout.strip():
        progs = {p["id"]: p.get("name", "") for p in json.loads(
            subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout or "[]")}
        for link in json.loads(links.stdout):
            if progs.get(link.get("prog_id"), "").startswith("pf_"):
                found.append(f"link {link['id']} ({progs[link['prog_id']]})")
    return found


def assert_clean(test, run_pid=None, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(run_pid)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    test.assertEqual(left, [], "a run left state behind")


def main():
    require_root()
    unittest.main(verbosity=2)
