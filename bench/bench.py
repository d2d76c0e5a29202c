#!/usr/bin/env python3
"""pinfold side by side with direct, squid, srt, bubblewrap, unshare and
mitmproxy on loopback. Started by bench/run.sh (root, after the README's
setup command); prints one table and writes it with the raw figures to
bench/results/.

Every figure is the median of --runs repetitions; each repetition measures
direct and every peer one after the other, so ratios compare figures taken
minutes apart at most, on the same machine state. Servers bind 127.0.0.1 (and
[::1]) on ports chosen here, and are stopped by PID.
"""

import argparse
import atexit
import base64
import datetime
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NOT_YET = "not yet available"
# pinfold with its opt-in busy-polling window (docs/benchmarks.md): a second
# pinfold contender on the latency rows, so the default and the flag are
# measured in the same run against the same direct figure.
BUSY_POLL_US = 200
BUSY_POLL = "pinfold-busy-poll"
BUSY_POLL_FLAG = f"--busy-poll-us {BUSY_POLL_US}"
# 100 MiB transfers per contender in each round of the bulk section.
BULK_PER_ROUND = 3
# bench/relay_probe: pinfold's SpliceRelay alone, and a sockmap redirect.
RELAY_MODES = ("splice", "sockmap")
# Clients inside a sandbox see the system's files, not necessarily this
# interpreter's (pyenv under /root is not readable there).
SANDBOX_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

started = []   # Popen objects, stopped by PID at exit


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stop(proc, sig=signal.SIGTERM, wait=10):
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=wait)
    except ProcessLookupError:
        pass


def stop_all():
    for proc in reversed(started):
        stop(proc)


def spawn(cmd, **kw):
    proc = subprocess.Popen(cmd, **kw)
    started.append(proc)
    return proc


def free_port():
    """A port free on both 127.0.0.1 and [::1] right now (squid cannot bind 0)."""
    for _ in range(50):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s4.bind(("127.0.0.1", 0))
        port = s4.getsockname()[1]
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s6.bind(("::1", port))
            return port
        except OSError:
            continue
        finally:
            s4.close()
            s6.close()
    raise RuntimeError("no free port")


def wait_port(port, proc, host="127.0.0.1", seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {seconds}s")


def run(cmd, timeout, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:300]} exited {r.returncode}:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
    return r


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- servers

class Nginx:
    """Origin server: /1k and /100m, HTTP on one port, HTTPS on another."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "nginx")
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        with open(os.path.join(www, "1k"), "wb") as f:
            f.write(os.urandom(1024))
        with open(os.path.join(www, "100m"), "wb") as f:
            for _ in range(100):
                f.write(os.urandom(1 << 20))
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
             "-keyout", os.path.join(self.dir, "key.pem"), "-out", os.path.join(self.dir, "cert.pem")], 30)
        self.http = free_port()
        self.https = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.http};
        listen [::1]:{self.http};
        root {www};
    }}
    server {{
        listen 127.0.0.1:{self.https} ssl;
        listen [::1]:{self.https} ssl;
        ssl_certificate {self.dir}/cert.pem;
        ssl_certificate_key {self.dir}/key.pem;
        ssl_session_cache shared:bench:10m;
        root {www};
    }}
}}
""")
        os.chmod(tmp, 0o755)
        for p in (self.dir, www):
            os.chmod(p, 0o755)
        self.proc = spawn(["nginx", "-c", conf, "-e", os.path.join(self.dir, "error.log")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.http, self.proc)
        wait_port(self.https, self.proc)

    def url(self, path, tls=False):
        return f"https://localhost:{self.https}{path}" if tls else f"http://127.0.0.1:{self.http}{path}"

    def stop(self):
        stop(self.proc, signal.SIGQUIT)


class Squid:
    """squid as an allow-list forward proxy: only the origin's address and
    port, no cache, access log on (pinfold writes its audit log too)."""

    def __init__(self, tmp, origin_port):
        self.dir = os.path.join(tmp, "squid")
        os.makedirs(self.dir)
        self.port = free_port()
        conf = os.path.join(self.dir, "squid.conf")
        with open(conf, "w") as f:
            f.write(f"""
http_port 127.0.0.1:{self.port}
acl origin dst 127.0.0.1/32
acl origin_port port {origin_port}
http_access allow localhost origin origin_port
http_access deny all
cache deny all
cache_mem 8 MB
access_log stdio:{self.dir}/access.log
cache_log {self.dir}/cache.log
cache_store_log none
pid_filename {self.dir}/squid.pid
coredump_dir {self.dir}
cache_effective_user proxy
max_filedescriptors 20000
shutdown_lifetime 1 seconds
forwarded_for delete
via off
""")
        shutil.chown(self.dir, "proxy")
        self.proc = spawn(["squid", "-N", "-f", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def stop(self):
        stop(self.proc, signal.SIGINT, wait=15)


class Mitmproxy:
    """mitmdump in reverse mode: terminates the client's TLS with its own
    certificate and opens its own TLS to nginx, i.e. interception."""

    def __init__(self, tmp, origin_https):
        self.dir = os.path.join(tmp, "mitmproxy")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc = spawn(["mitmdump", "--set", f"confdir={self.dir}", "--mode",
                           f"reverse:https://localhost:{origin_https}", "--listen-host", "127.0.0.1",
                           "--listen-port", str(self.port), "--ssl-insecure", "-q"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, seconds=60)

    def stop(self):
        stop(self.proc, signal.SIGINT, wait=15)


# ---------------------------------------------------------------- runners
#
# A runner turns a client command into the command that runs it under one
# contender: direct, inside `pinfold run`, through squid, inside srt.

def https_methods(mode):
    """Pass-through never sees a request, so its rule names no methods (a
    policy checker may well refuse methods it cannot enforce)."""
    return "    methods: [GET]\n" if mode == "intercept" else ""


class Pinfold:
    def __init__(self, tmp, bin_dir, nginx):
        self.bin = os.path.join(bin_dir, "pinfold")
        self.dir = os.path.join(tmp, "pinfold")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.policy = os.path.join(self.dir, "policy.yaml")
        self.audit = os.path.join(self.dir, "audit.jsonl")
        rules = [f"""  - name: origin-http
    endpoint: http://127.0.0.1:{nginx.http}/**
    methods: [GET]
"""]
        self.tls = {}
        for mode in ("passthrough", "intercept"):
            probe = os.path.join(self.dir, f"probe-{mode}.yaml")
            with open(probe, "w") as f:
                f.write(f"""name: probe
rules:
  - name: origin-https
    endpoint: https://localhost:{nginx.https}/**
{https_methods(mode)}    tls: {mode}
""")
            r = run([self.bin, "check", probe], 30, check=False)
            self.tls[mode] = r.returncode == 0
        # One policy per TLS mode; HTTP rules are in all of them.
        self.policies = {}
        for mode in (None, "passthrough", "intercept"):
            path = os.path.join(self.dir, f"policy-{mode or 'http'}.yaml")
            text = "name: bench\nrules:\n" + "".join(rules)
            if mode and self.tls[mode]:
                text += f"""  - name: origin-https
    endpoint: https://localhost:{nginx.https}/**
{https_methods(mode)}    tls: {mode}
"""
            with open(path, "w") as f:
                f.write(text)
            self.policies[mode] = path
        self.hosts = ["--host", "localhost=127.0.0.1,::1"]
        self.origin_cert = os.path.join(nginx.dir, "cert.pem")

    def wrap(self, cmd, tls=None, busy_poll_us=0):
        # Interception verifies nginx's self-signed certificate like any other.
        roots = ["--upstream-ca", self.origin_cert] if tls == "intercept" else []
        poll = ["--busy-poll-us", str(busy_poll_us)] if busy_poll_us else []
        return [self.bin, "run", "--policy", self.policies[tls], "--audit", self.audit, *self.hosts, *roots, *poll,
                "--", *cmd]

    def version(self, label=None):
        if label:
            return label
        r = run(["git", "-C", ROOT, "describe", "--always", "--dirty"], 10, check=False)
        return "git " + r.stdout.strip()


class Srt:
    """Anthropic sandbox runtime: bubblewrap without a network namespace of
    its own, traffic through its HTTP proxy on the host via a Unix socket;
    clients must honour HTTP_PROXY (ours do, through via_env_proxy.py)."""

    def __init__(self, tmp, nginx):
        self.bin = os.path.join(HERE, "srt", "node_modules", ".bin", "srt")
        self.available = os.path.exists(self.bin)
        self.reason = "" if self.available else "not installed (bench/run.sh runs `npm ci` in bench/srt)"
        self.settings = os.path.join(tmp, "srt-settings.json")
        with open(self.settings, "w") as f:
            json.dump({"network": {"allowedDomains": [f"127.0.0.1:{nginx.http}", f"localhost:{nginx.https}"],
                                   "deniedDomains": []},
                       "filesystem": {"denyRead": [], "allowWrite": [tmp], "denyWrite": []}}, f)
        if self.available:
            r = run([self.bin, "-s", self.settings, "/bin/true"], 60, check=False)
            if r.returncode != 0:
                self.available = False
                self.reason = f"srt /bin/true exited {r.returncode}: {(r.stderr or r.stdout).strip()[:200]}"

    def wrap(self, cmd):
        return [self.bin, "-s", self.settings, "--", SANDBOX_PYTHON, os.path.join(HERE, "via_env_proxy.py"), *cmd]

    def version(self):
        with open(os.path.join(HERE, "srt", "node_modules", "@anthropic-ai", "sandbox-runtime", "package.json")) as f:
            return json.load(f)["version"]


# ---------------------------------------------------------------- clients

WRK_LINE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def parse_wrk(out, closing=False):
    """closing: every request closes its connection; read errors are then
    counted by wrk when a peer ends TLS without close_notify, and are
    returned for a footnote rather than treated as a failed run."""
    rps = WRK_LINE.search(out)
    p99 = WRK_P99.search(out)
    if not rps or not p99:
        raise RuntimeError("unparsable wrk output:\n" + out[-2000:])
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    only_reads = sock_err and closing and sock_err.group(1) == sock_err.group(3) == sock_err.group(4) == "0"
    if errors or (sock_err and not only_reads):
        raise RuntimeError("wrk saw errors:\n" + out[-2000:])
    if only_reads:
        return float(rps.group(1)), float(p99.group(1)) * scale, int(sock_err.group(2))
    return float(rps.group(1)), float(p99.group(1)) * scale


def wrk_cmd(url, conns, seconds, extra=()):
    threads = min(2, conns)
    return ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--latency", "--timeout", "5s",
            *extra, url]


def wrk_proxy_script(tmp, origin_url):
    """wrk speaks to a forward proxy: absolute URI on the request line."""
    path = os.path.join(tmp, "wrk-proxy.lua")
    host = origin_url.split("/")[2]
    with open(path, "w") as f:
        f.write(f'wrk.path = "{origin_url}"\nwrk.headers["Host"] = "{host}"\n')
    os.chmod(path, 0o644)
    return path


# ---------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="pinfold-bench-")
        atexit.register(shutil.rmtree, self.tmp, True)
        self.load_start = os.getloadavg()[0]
        self.results = {}    # key -> {contender: [values]}
        self.notes = {}      # key -> {contender: text}

    def add(self, key, who, value):
        self.results.setdefault(key, {}).setdefault(who, []).append(value)

    def note(self, key, who, text):
        self.notes.setdefault(key, {})[who] = text

    def want(self, section):
        return not self.args.only or section in self.args.only

    def setup(self):
        log(f"scratch directory {self.tmp}")
        self.nginx = Nginx(self.tmp)
        log(f"nginx on 127.0.0.1:{self.nginx.http} (HTTP) and :{self.nginx.https} (HTTPS), pid {self.nginx.proc.pid}")
        self.pinfold = Pinfold(self.tmp, self.args.bin_dir, self.nginx)
        log(f"pinfold HTTPS support: pass-through {self.pinfold.tls['passthrough']}, "
            f"interception {self.pinfold.tls['intercept']}")
        self.squid = Squid(self.tmp, self.nginx.http)
        log(f"squid on 127.0.0.1:{self.squid.port}, pid {self.squid.proc.pid}")
        self.srt = Srt(self.tmp, self.nginx)
        log(f"srt: {'available' if self.srt.available else self.srt.reason}")
        self.mitm = None
        self.squid_lua = wrk_proxy_script(self.tmp, self.nginx.url("/1k"))
        self.conn_latency = os.path.join(self.args.bin_dir, "conn_latency")

    def teardown(self):
        if self.mitm:
            self.mitm.stop()
        self.squid.stop()
        self.nginx.stop()

    # -- sandbox start
    def bench_start(self):
        p = self.pinfold
        cmds = {
            "direct": ["/bin/true"],
            "unshare": ["unshare", "-U", "-r", "-n", "/bin/true"],
            "bwrap": ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
                      "/bin/true"],
            "pinfold": [p.bin, "run", "--policy", p.policies[None], "--audit", "/dev/null", "--", "/bin/true"],
        }
        if self.srt.available:
            cmds["srt"] = [self.srt.bin, "-s", self.srt.settings, "/bin/true"]
        else:
            self.note("start", "srt", self.srt.reason)
        for who, cmd in cmds.items():
            out = os.path.join(self.tmp, f"hyperfine-{who}.json")
            runs = self.args.start_runs if who != "srt" else max(5, self.args.start_runs // 3)
            run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out,
                 " ".join(cmd)], 300)
            with open(out) as f:
                res = json.load(f)["results"][0]
            self.add("start", who, res["median"] * 1e3)
            log(f"start {who}: median {res['median'] * 1e3:.2f} ms")

    # -- latency of a new connection
    def latency_cmd(self, absolute=None, auth=None):
        cmd = [self.conn_latency, "127.0.0.1", str(self.nginx.http), "/1k", str(self.args.conn_count)]
        if absolute:
            cmd = [self.conn_latency, "127.0.0.1", str(absolute), "/1k", str(self.args.conn_count),
                   "--absolute", f"127.0.0.1:{self.nginx.http}"]
        return cmd

    def bench_newconn(self):
        for i in range(self.args.runs):
            cases = {
                "direct": self.latency_cmd(),
                "pinfold": self.pinfold.wrap(self.latency_cmd()),
                BUSY_POLL: self.pinfold.wrap(self.latency_cmd(), busy_poll_us=BUSY_POLL_US),
                "squid": self.latency_cmd(absolute=self.squid.port),
            }
            if self.srt.available:
                cases["srt"] = self.srt.wrap(["conn_latency", self.conn_latency, str(self.nginx.http), "/1k",
                                              str(self.args.conn_count)])
            for who, cmd in cases.items():
                r = run(cmd, 300, check=False)
                try:
                    res = json.loads(r.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    res = {}
                if r.returncode != 0 or "p50_us" not in res:
                    self.note("newconn", who, f"failed: {(r.stderr or r.stdout).strip()[-200:]}")
                    continue
                self.add("newconn_p50", who, res["p50_us"])
                self.add("newconn_p99", who, res["p99_us"])
            log(f"new connection, run {i + 1}: " + ", ".join(
                f"{w} {self.results['newconn_p50'][w][-1]:.0f}/{self.results['newconn_p99'][w][-1]:.0f} us"
                for w in self.results.get("newconn_p50", {})))

    # -- keep-alive 1 KiB
    def bench_keepalive(self):
        url = self.nginx.url("/1k")
        squid_url = f"http://127.0.0.1:{self.squid.port}/"
        for conns in (1, 50):
            for i in range(self.args.runs):
                cases = {
                    "direct": wrk_cmd(url, conns, self.args.seconds),
                    "pinfold": self.pinfold.wrap(wrk_cmd(url, conns, self.args.seconds)),
                    BUSY_POLL: self.pinfold.wrap(wrk_cmd(url, conns, self.args.seconds), busy_poll_us=BUSY_POLL_US),
                    "squid": wrk_cmd(squid_url, conns, self.args.seconds, ["-s", self.squid_lua]),
                }
                if self.srt.available:
                    cases["srt"] = self.srt.wrap(["wrk", self.squid_lua, *wrk_cmd("PROXY", conns, self.args.seconds)[1:]])
                for who, cmd in cases.items():
                    try:
                        r = run(cmd, self.args.seconds + 60)
                        rps, p99 = parse_wrk(r.stdout)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        self.note(f"ka{conns}", who, f"failed: {str(e).strip()[-300:]}")
                        log(f"keep-alive c={conns} {who}: {str(e)[-300:]}")
                        continue
                    self.add(f"ka{conns}_rps", who, rps)
                    self.add(f"ka{conns}_p99", who, p99)
                log(f"keep-alive c={conns}, run {i + 1}: " + ", ".join(
                    f"{w} {v[-1]:.0f}/s" for w, v in self.results.get(f"ka{conns}_rps", {}).items()))

    # -- 100 MiB
    def curl_loop(self, url, runs, extra=()):
        """A shell loop of curls, so a sandbox starts once per batch; each
        line is one transfer's time_total."""
        curl = " ".join(["curl", "-s", "-k", "-o", "/dev/null", "--max-time", "30", "-w",
                         "'%{time_total} %{size_download} %{http_code}\\n'", *extra, url])
        return ["sh", "-c", f"i=0; while [ $i -lt {runs} ]; do {curl}; i=$((i+1)); done"]

    def parse_times(self, key, who, r):
        """Complete transfers count; a stalled or short one is reported
        beside the median of the others, never averaged in."""
        bad = []
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == str(100 << 20) and parts[2] == "200":
                self.add(key, who, float(parts[0]) * 1e3)
            else:
                bad.append(line.strip())
        if bad or r.returncode != 0:
            total = len(r.stdout.splitlines())
            self.note(key, who, f"{len(bad)} of {total} transfers incomplete (time, bytes, status: "
                                f"{'; '.join(bad[:3])}){' exit ' + str(r.returncode) if r.returncode else ''}")

    def bench_bulk(self):
        # Rounds alternate the contenders, so that a drift of the machine (the
        # host, another tenant) falls on all of them alike; each round is a
        # batch of BULK_PER_ROUND transfers per contender.
        url = self.nginx.url("/100m")
        tls_url = self.nginx.url("/100m", tls=True)
        n = BULK_PER_ROUND
        if not self.pinfold.tls["passthrough"]:
            self.note("https100m", "pinfold", NOT_YET)
        for i in range(self.args.runs):
            cases = {
                "direct": self.curl_loop(url, n),
                "pinfold": self.pinfold.wrap(self.curl_loop(url, n)),
                "squid": self.curl_loop(url, n, ["-x", f"http://127.0.0.1:{self.squid.port}"]),
            }
            if self.srt.available:
                cases["srt"] = self.srt.wrap(["sh", *self.curl_loop(url, n, ["-x", "PROXY", "--noproxy", "''"])[1:]])
            for who, cmd in cases.items():
                self.parse_times("http100m", who, run(cmd, 600, check=False))
            self.parse_times("https100m", "direct", run(self.curl_loop(tls_url, n), 600, check=False))
            if self.pinfold.tls["passthrough"]:
                self.parse_times("https100m", "pinfold",
                                 run(self.pinfold.wrap(self.curl_loop(tls_url, n), "passthrough"), 600, check=False))
        log("HTTP 100 MiB: " + ", ".join(f"{w} {median(v):.0f} ms" for w, v in self.results["http100m"].items()))
        log("HTTPS 100 MiB: " + ", ".join(f"{w} {median(v):.0f} ms" for w, v in self.results["https100m"].items()))

    # -- what a kernel-side relay would save: bench/relay_probe, not pinfold
    def start_relay_probe(self, mode, origin_port):
        proc = spawn([os.path.join(self.args.bin_dir, "relay_probe"), mode, str(origin_port)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline().strip() if ready else ""
        if not line.isdigit():
            stop(proc)
            raise RuntimeError(f"relay_probe {mode}: {line or 'no port'} {proc.stderr.read()[-300:]}")
        return proc, int(line)

    @staticmethod
    def busy_jiffies():
        """CPU time the whole machine spent busy, in USER_HZ ticks: the
        kernel's relay work (softirq, kworker) is charged to nobody's
        process, so the probe's own CPU time would flatter the sockmap."""
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return sum(ticks) - ticks[3] - ticks[4]   # less idle and iowait

    def bench_relay(self):
        probes = {}
        try:
            for mode in RELAY_MODES:
                probes[(mode, False)] = self.start_relay_probe(mode, self.nginx.http)
                probes[(mode, True)] = self.start_relay_probe(mode, self.nginx.https)
            hz = os.sysconf("SC_CLK_TCK")
            busy = {}   # key -> [ticks, transfers]
            n = BULK_PER_ROUND
            for _ in range(self.args.runs):
                for tls, key in ((False, "relay_http"), (True, "relay_https")):
                    cases = {"direct": self.nginx.url("/100m", tls=tls)}
                    for mode in RELAY_MODES:
                        scheme = "https://localhost" if tls else "http://127.0.0.1"
                        cases[mode] = f"{scheme}:{probes[(mode, tls)][1]}/100m"
                    for who, url in cases.items():
                        before = self.busy_jiffies()
                        done = len(self.results.get(key, {}).get(who, []))
                        self.parse_times(key, who, run(self.curl_loop(url, n), 600, check=False))
                        acc = busy.setdefault((key, who), [0, 0])
                        acc[0] += self.busy_jiffies() - before
                        acc[1] += len(self.results.get(key, {}).get(who, [])) - done
            for (key, who), (ticks, transfers) in busy.items():
                if transfers:
                    self.add(f"{key}_cpu", who, ticks * 1e3 / hz / transfers)
        finally:
            for proc, _ in probes.values():
                stop(proc)
        for key in ("relay_http", "relay_https"):
            log(f"{key}: " + ", ".join(f"{w} {median(v):.0f} ms" for w, v in self.results.get(key, {}).items()))

    # -- HTTPS interception
    def bench_intercept(self):
        self.mitm = Mitmproxy(self.tmp, self.nginx.https)
        log(f"mitmdump on 127.0.0.1:{self.mitm.port}, pid {self.mitm.proc.pid}")
        url = self.nginx.url("/1k", tls=True)
        mitm_url = f"https://127.0.0.1:{self.mitm.port}/1k"
        close = ["-H", "Connection: close"]
        # mitmproxy needs seconds to get through 50 first handshakes; runs
        # shorter than 10 s would measure its warm-up, not its rate.
        seconds = max(10, self.args.seconds)
        warm = {"direct": url, "mitmproxy": mitm_url}
        for who, u in warm.items():
            run(wrk_cmd(u, 50, 3), 60, check=False)   # fills leaf and session caches
        for i in range(self.args.runs):
            for key, extra in (("tls_ka", ()), ("tls_hs", close)):
                cases = {
                    "direct": wrk_cmd(url, 50, seconds, extra),
                    "mitmproxy": wrk_cmd(mitm_url, 50, seconds, extra),
                }
                if self.pinfold.tls["intercept"]:
                    # One pinfold run: a warm-up pass fills the leaf cache,
                    # the second pass is measured.
                    cmd = wrk_cmd(url, 50, seconds, extra)
                    cases["pinfold"] = self.pinfold.wrap(
                        ["sh", "-c", " ".join(wrk_cmd(url, 50, 2)) + " >/dev/null; exec \"$@\"", "sh", *cmd],
                        "intercept")
                else:
                    self.note(key, "pinfold", NOT_YET)
                for who, cmd in cases.items():
                    try:
                        r = run(cmd, seconds + 60)
                        rps, p99, *read_errors = parse_wrk(r.stdout, closing=key == "tls_hs")
                        if read_errors:
                            self.note(key, who, f"wrk counted {read_errors[0]} read errors in the last run "
                                                "(connections ended without TLS close_notify)")
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        self.note(key, who, f"failed: {str(e).strip()[-300:]}")
                        log(f"{key} {who}: {str(e)[-300:]}")
                        continue
                    self.add(key, who, rps)
            log(f"HTTPS interception run {i + 1}: " + "; ".join(
                f"{k} " + ", ".join(f"{w} {v[-1]:.0f}/s" for w, v in self.results.get(k, {}).items())
                for k in ("tls_ka", "tls_hs")))

    # -- policy decision cost
    def bench_policy(self):
        out = os.path.join(self.tmp, "policy.json")
        run([os.path.join(self.args.bin_dir, "policy_bench"), f"--benchmark_repetitions={self.args.runs}",
             "--benchmark_report_aggregates_only=true", "--benchmark_min_time=0.2",
             f"--benchmark_out={out}", "--benchmark_out_format=json"], 600)
        with open(out) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            if b.get("aggregate_name") != "median":
                continue
            name, rules = b["run_name"].split("/")
            self.add(f"policy_{name}", rules, b["cpu_time"])
        log("policy: " + json.dumps({k: v for k, v in self.results.items() if k.startswith("policy")}))

    # -- proxy memory
    def rss_of(self, pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return None

    def find_proxy(self, pinfold_pid):
        """pinfold-proxy among the descendants of the pinfold process."""
        todo = [pinfold_pid]
        for _ in range(1000):
            if not todo:
                break
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "pinfold-proxy":
                        return pid
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
        return None

    def idle_conns(self, wrap, proxy_pid_of, absolute=None):
        script = [SANDBOX_PYTHON, os.path.join(HERE, "idle_conns.py"), "127.0.0.1",
                  str(absolute or self.nginx.http), str(self.args.idle_conns)]
        if absolute:
            script += ["--absolute", f"127.0.0.1:{self.nginx.http}"]
        proc = spawn(wrap(script), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline().strip()
            if line != "idle":
                raise RuntimeError(f"idle_conns said {line!r}: {proc.stderr.read()[-500:] if proc.poll() else ''}")
            time.sleep(0.5)
            pid = proxy_pid_of(proc.pid)
            idle = self.rss_of(pid)
            proc.stdin.write("open\n")
            proc.stdin.flush()
            line = proc.stdout.readline().strip()
            if not line.startswith("open"):
                raise RuntimeError(f"idle_conns said {line!r}")
            time.sleep(0.5)
            busy = self.rss_of(pid)
            proc.stdin.write("done\n")
            proc.stdin.flush()
            proc.wait(timeout=60)
            return idle, busy
        finally:
            stop(proc)

    def bench_rss(self):
        for i in range(self.args.runs):
            try:
                idle, busy = self.idle_conns(self.pinfold.wrap, self.find_proxy)
                self.add("rss_idle", "pinfold", idle)
                self.add("rss_1000", "pinfold", busy)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                self.note("rss", "pinfold", f"failed: {e}")
                log(f"rss pinfold: {e}")
            try:
                idle, busy = self.idle_conns(lambda c: c, lambda _pid: self.squid.proc.pid, absolute=self.squid.port)
                self.add("rss_idle", "squid", idle)
                self.add("rss_1000", "squid", busy)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                self.note("rss", "squid", f"failed: {e}")
                log(f"rss squid: {e}")
        log("RSS: " + json.dumps({k: v for k, v in self.results.items() if k.startswith("rss")}))

    # ------------------------------------------------------------ report
    def versions(self):
        def first(cmd):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                return (r.stdout + r.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                return "?"
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} cores, {cpu}, "
                       f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB, "
                       f"kernel {platform.release()}",
            "pinfold": self.pinfold.version(self.args.label),
            "nginx": first(["nginx", "-v"]),
            "squid": first(["squid", "-v"]),
            "srt": (self.srt.version() + f" on node {first(['node', '--version'])}") if self.srt.available
                   else self.srt.reason,
            "mitmproxy": first(["mitmdump", "--version"]),
            "bubblewrap": first(["bwrap", "--version"]),
            "unshare": first(["unshare", "--version"]),
            "wrk": first(["wrk", "-v"]),
            "hyperfine": first(["hyperfine", "--version"]),
            "curl": first(["curl", "--version"]),
            "load average (1 min) at start / end": f"{self.load_start:.2f} / {os.getloadavg()[0]:.2f} "
                                                    "(other work on the machine makes figures noisier)",
        }

    def table(self):
        R = self.results

        def med(key, who):
            return median(R.get(key, {}).get(who, []))

        def cell(key, who, fmt, ratio="x", direct="direct"):
            v = med(key, who)
            if v is None:
                text = self.notes.get(key, {}).get(who) or self.notes.get(key.split("_")[0], {}).get(who)
                if not text:
                    return "—"
                if text == NOT_YET:
                    return text
                if text not in footnotes:
                    footnotes.append(text)
                return f"no figure [{footnotes.index(text) + 1}]"
            s = fmt(v)
            d = med(key, direct)
            if who != direct and d:
                s += f" ({v / d:.2f}×)"
            text = self.notes.get(key, {}).get(who)
            if text and text != NOT_YET:
                if text not in footnotes:
                    footnotes.append(text)
                s += f" [{footnotes.index(text) + 1}]"
            return s

        ms = lambda v: f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"
        us = lambda v: f"{v:.0f} µs"
        rps = lambda v: f"{v:,.0f}/s"
        mib = lambda v: f"{v:.1f} MiB"
        contenders = ["direct", "pinfold", "squid", "srt"]
        footnotes = []
        rows = []
        header = "| work | direct | pinfold | squid | srt | other peers |"
        rows.append(header)
        rows.append("|---|---|---|---|---|---|")

        def row(label, key, fmt, others=""):
            rows.append(f"| {label} | " + " | ".join(cell(key, w, fmt) for w in contenders) + f" | {others} |")

        start_others = ", ".join(f"{w} {cell('start', w, ms)}" for w in ("unshare", "bwrap"))
        row("sandbox start `/bin/true` (hyperfine median)", "start", ms, start_others)
        busy = lambda key, fmt: f"pinfold {BUSY_POLL_FLAG} {cell(key, BUSY_POLL, fmt)}"
        row("new connection + 1 KiB GET, p50", "newconn_p50", us, busy("newconn_p50", us))
        row("new connection + 1 KiB GET, p99", "newconn_p99", us, busy("newconn_p99", us))
        for c in (1, 50):
            row(f"HTTP 1 KiB keep-alive req/s, c={c}", f"ka{c}_rps", rps, busy(f"ka{c}_rps", rps))
            row(f"HTTP 1 KiB keep-alive p99, c={c}", f"ka{c}_p99", ms, busy(f"ka{c}_p99", ms))
        row("HTTP 100 MiB transfer time", "http100m", ms)
        row("HTTPS 100 MiB pass-through time", "https100m", ms)
        cpu = lambda v: f"{v:.0f} ms"
        for key, label in (("relay_http", "HTTP 100 MiB"), ("relay_https", "HTTPS 100 MiB")):
            if key in R:
                probes = "; ".join(f"{w} relay {cell(key, w, ms)}, machine CPU {cell(key + '_cpu', w, cpu)}"
                                   for w in RELAY_MODES)
                rows.append(f"| {label}, bare relay (bench/relay_probe, not pinfold), machine CPU per transfer "
                            f"| {cell(key, 'direct', ms)}, CPU {cell(key + '_cpu', 'direct', cpu)} | — | — | — "
                            f"| {probes} |")
        row("HTTPS 1 KiB keep-alive req/s (interception), c=50", "tls_ka", rps,
            "mitmproxy " + cell("tls_ka", "mitmproxy", rps))
        row("HTTPS new handshakes/s (interception, warm leaf cache), c=50", "tls_hs", rps,
            "mitmproxy " + cell("tls_hs", "mitmproxy", rps))
        row("proxy RSS idle", "rss_idle", mib)
        row(f"proxy RSS with {self.args.idle_conns} idle connections", "rss_1000", mib)
        for shape, label in (("spread_allow", "allow, 2 rules per host"), ("spread_deny", "deny, 2 rules per host"),
                             ("one_host_allow", "allow, all rules on one host")):
            key = f"policy_{shape}"
            if key in R:
                vals = "; ".join(f"{n} rules {cell(key, n, lambda v: f'{v:.0f} ns', direct='10')}"
                                 for n in ("10", "1000", "10000"))
                rows.append(f"| policy decision ({label}), CPU time | — | {vals} | — | — | ratio to 10 rules |")
        for i, text in enumerate(footnotes):
            rows.append(f"\n[{i + 1}] " + " ".join(text.split())[-400:])
        return "\n".join(rows)

    def targets(self):
        R = self.results

        def med(key, who):
            return median(R.get(key, {}).get(who, []))

        def ratio(key, a, b):
            x, y = med(key, a), med(key, b)
            return x / y if x is not None and y else None

        out = []

        def check(name, value, ok, text):
            if value is None:
                out.append(f"- {name}: not measured (see the table)")
            else:
                out.append(f"- {name}: **{'met' if ok(value) else 'missed'}** — {text.format(v=value)}")

        check("HTTP keep-alive req/s at c=50 ≥ 0.5× direct", ratio("ka50_rps", "pinfold", "direct"),
              lambda v: v >= 0.5, "{v:.3f}× direct")
        check("… and ≥ 2.5× squid", ratio("ka50_rps", "pinfold", "squid"), lambda v: v >= 2.5, "{v:.3f}× squid")
        check("HTTP 100 MiB ≤ 1.3× direct time", ratio("http100m", "pinfold", "direct"), lambda v: v <= 1.3,
              "{v:.3f}× direct")
        check("HTTPS pass-through 100 MiB ≤ 1.2× direct time", ratio("https100m", "pinfold", "direct"),
              lambda v: v <= 1.2, "{v:.3f}× direct")
        check("HTTPS interception keep-alive ≥ 10× mitmproxy", ratio("tls_ka", "pinfold", "mitmproxy"),
              lambda v: v >= 10, "{v:.1f}× mitmproxy")
        check("… and ≥ 0.2× direct", ratio("tls_ka", "pinfold", "direct"), lambda v: v >= 0.2, "{v:.3f}× direct")
        d50 = med("newconn_p50", "direct")
        for who, how in (("pinfold", "default"), (BUSY_POLL, BUSY_POLL_FLAG)):
            p50 = med("newconn_p50", who)
            check(f"added p50 latency per new connection ≤ 50 µs ({how})", p50 - d50 if p50 and d50 else None,
                  lambda v: v <= 50, "+{v:.0f} µs")
        check(f"… keep-alive c=50 with {BUSY_POLL_FLAG} still ≥ 0.5× direct", ratio("ka50_rps", BUSY_POLL, "direct"),
              lambda v: v >= 0.5, "{v:.3f}× direct")
        check("`pinfold run -- /bin/true` ≤ 30 ms", med("start", "pinfold"), lambda v: v <= 30, "{v:.1f} ms")
        a, b = med("policy_spread_allow", "10000"), med("policy_spread_allow", "10")
        check("decision at 10 000 rules ≤ 2× at 10 rules", a / b if a and b else None, lambda v: v <= 2,
              "{v:.2f}× (2 rules per host)")
        check("proxy RSS ≤ 30 MB with 1 000 idle connections", med("rss_1000", "pinfold"),
              lambda v: v * 1.048576 <= 30, "{v:.1f} MiB")
        return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True, help="build directory's bin/ (pinfold, policy_bench, conn_latency)")
    ap.add_argument("--runs", type=int, default=5, help="repetitions per figure (median reported)")
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    ap.add_argument("--start-runs", type=int, default=30, help="hyperfine runs per start-up command")
    ap.add_argument("--conn-count", type=int, default=2000, help="connections per new-connection run")
    ap.add_argument("--idle-conns", type=int, default=1000)
    ap.add_argument("--only", type=lambda s: s.split(","), default=None,
                    help="comma list of: start,newconn,keepalive,bulk,relay,intercept,policy,rss")
    ap.add_argument("--quick", action="store_true", help="3 runs of 2 s: a smoke test, not a result")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--label", help="what the binaries are, when not this checkout's build (default: git describe)")
    args = ap.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)   # clients run from other directories (srt, sandboxes)
    if args.quick:
        args.runs, args.seconds, args.start_runs, args.conn_count = 3, 2, 10, 500
    if os.geteuid() != 0:
        sys.exit("bench.py: run as root (pinfold run loads BPF programs)")
    for tool in ("wrk", "hyperfine", "nginx", "squid", "mitmdump", "bwrap", "unshare", "curl", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"bench.py: {tool} not found; run scripts/install-deps.sh (README's setup command)")
    # 1 000 idle connections need 2 000 descriptors in the proxy, which
    # inherits this limit through pinfold.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    atexit.register(stop_all)
    b = Bench(args)
    b.setup()
    t0 = time.monotonic()
    try:
        sections = [("policy", b.bench_policy), ("start", b.bench_start), ("newconn", b.bench_newconn),
                    ("keepalive", b.bench_keepalive), ("bulk", b.bench_bulk), ("relay", b.bench_relay),
                    ("intercept", b.bench_intercept),
                    ("rss", b.bench_rss)]
        for name, fn in sections:
            if b.want(name):
                log(f"== {name}")
                try:
                    fn()
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    log(f"{name} failed: {e}")
                    b.note(name, "pinfold", f"section failed: {str(e)[:200]}")
    finally:
        b.teardown()
    versions = b.versions()
    table = b.table()
    targets = b.targets()
    text = (f"date: {versions['date']}; {args.runs} runs per figure (median), wrk {args.seconds} s per run; "
            f"{time.monotonic() - t0:.0f} s in all\n\n{table}\n\nTargets (issue 9):\n{targets}\n\nVersions:\n" +
            "\n".join(f"- {k}: {v}" for k, v in versions.items()) + "\n")
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, f"{stamp}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, f"{stamp}.json"), "w") as f:
        json.dump({"versions": versions, "args": vars(args), "results": b.results, "notes": b.notes}, f, indent=1)
    log(f"written to {args.out}/{stamp}.md and .json")


if __name__ == "__main__":
    main()
