#!/usr/bin/env python3
"""Where the proxy's CPU goes per request (bench/run.sh --profile, root).

This machine's perf cannot count instructions (`perf stat -e instructions
true` says <not supported>: no PMU in the guest), so:
  1. callgrind: user-space instructions per request, by function, for
     keep-alive 1 KiB GETs and for one-request connections;
  2. perf record -e cpu-clock (a software clock, which works here): the
     user/kernel split and the hottest kernel and user symbols;
  3. strace -c: system calls per request.
Each workload runs inside `pinfold run` against the bench's nginx; the
proxy is swapped for a wrapper (--proxy) only for callgrind.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def wrk_requests(out):
    m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)) if m else 0


def section(title):
    return f"\n## {title}\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--out", default=os.path.join(bench.HERE, "results"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile.py: run as root")
    bench.atexit.register(bench.stop_all)
    b = bench.Bench(argparse.Namespace(bin_dir=args.bin_dir, only=None))
    tmp = b.tmp
    nginx = bench.Nginx(tmp)
    pinfold = bench.Pinfold(tmp, args.bin_dir, nginx)
    proxy_bin = os.path.join(args.bin_dir, "pinfold-proxy")
    url = nginx.url("/1k")
    report = [f"# proxy profile, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {pinfold.version()}"]

    # 1. callgrind, through a --proxy wrapper. The proxy runs as nobody:
    # the output directory must be writable by it.
    cg_dir = os.path.join(tmp, "callgrind")
    os.makedirs(cg_dir)
    os.chmod(cg_dir, 0o777)
    wrapper = os.path.join(tmp, "proxy-under-callgrind")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={cg_dir}/%q{{CG_NAME}}.out "
                f"{proxy_bin} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    workloads = {
        "keepalive": ["wrk", "-t", "1", "-c", "10", "-d", "8s", url],
        "newconn": [b.conn_latency if hasattr(b, "conn_latency") else os.path.join(args.bin_dir, "conn_latency"),
                    "127.0.0.1", str(nginx.http), "/1k", "2000"],
    }
    for name, cmd in workloads.items():
        env = dict(os.environ, CG_NAME=name)
        r = bench.run([pinfold.bin, "run", "--proxy", wrapper, "--policy", pinfold.policies[None], "--audit",
                       pinfold.audit, "--", *cmd], 300, env=env)
        requests = wrk_requests(r.stdout) if name == "keepalive" else 2000 + 20
        out = os.path.join(cg_dir, f"{name}.out")
        for _ in range(50):
            if os.path.exists(out):
                break
            time.sleep(0.1)
        ann = bench.run(["callgrind_annotate", "--inclusive=no", out], 120).stdout
        incl = bench.run(["callgrind_annotate", "--inclusive=yes", out], 120).stdout
        total = re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", ann)
        total_ir = int(total.group(1).replace(",", "")) if total else 0
        report.append(section(f"callgrind, {name}: {requests} requests under valgrind"))
        if requests:
            report.append(f"{total_ir:,} Ir in all, {total_ir // requests:,} Ir per request "
                          "(start-up included; user space only)\n")
        report.append("self cost, top 30:\n```\n" + "\n".join(top_lines(ann, 30)) + "\n```")
        report.append("inclusive cost, top 40:\n```\n" + "\n".join(top_lines(incl, 40)) + "\n```")
        shutil.copy(out, os.path.join(args.out, f"callgrind-{name}.out")) if os.path.isdir(args.out) else None

    # 2. perf (software clock) and 3. strace, on the real proxy under load.
    for name, cmd, seconds in (("keepalive c=50", ["wrk", "-t", "2", "-c", "50", "-d", "12s", url], 12),
                               ("newconn", workloads["newconn"][:-1] + ["40000"], 12)):
        proc = bench.spawn(pinfold.wrap(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        pid = b.find_proxy(proc.pid)
        if not pid:
            report.append(section(f"{name}: proxy not found"))
            bench.stop(proc)
            continue
        perf_data = os.path.join(tmp, "perf.data")
        perf = bench.spawn(["perf", "record", "-e", "cpu-clock", "-F", "4000", "-g", "-o", perf_data, "-p", str(pid),
                            "--", "sleep", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        perf.wait(timeout=30)
        strace_out = os.path.join(tmp, "strace.txt")
        st = bench.spawn(["timeout", "-s", "INT", "3", "strace", "-c", "-o", strace_out, "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        st.wait(timeout=30)
        out, err = proc.communicate(timeout=120)
        rep = bench.run(["perf", "report", "-i", perf_data, "--no-children", "--sort", "dso,sym", "--stdio",
                         "-g", "none", "--percent-limit", "0.7"], 120, check=False).stdout
        dso = bench.run(["perf", "report", "-i", perf_data, "--no-children", "--sort", "dso", "--stdio", "-g",
                         "none"], 120, check=False).stdout
        report.append(section(f"perf cpu-clock, {name} (5 s of the proxy process)"))
        report.append("by DSO:\n```\n" + "\n".join(l for l in dso.splitlines() if l and not l.startswith("#"))
                      + "\n```")
        report.append("by symbol (≥ 0.7 %):\n```\n" + "\n".join(
            l for l in rep.splitlines() if l and not l.startswith("#")) + "\n```")
        with open(strace_out) as f:
            report.append(f"strace -c over 3 s ({name}); client said: "
                          f"{' '.join(out.split()[-12:]) if out else err[-200:]}\n```\n{f.read()}```")

    nginx.stop()
    text = "\n".join(report) + "\n"
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"profile-{time.strftime('%Y%m%d-%H%M%S')}.md")
    with open(path, "w") as f:
        f.write(text)
    print(text)
    bench.log(f"written to {path}")


def top_lines(annotate_output, n):
    lines = annotate_output.splitlines()
    start = next((i for i, l in enumerate(lines) if "file:function" in l), None)
    if start is None:
        return lines[:n]
    body = [l for l in lines[start + 1:] if l.strip()]
    return [l[:160] for l in body[:n]]


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
