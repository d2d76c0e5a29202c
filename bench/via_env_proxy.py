#!/usr/bin/env python3
"""Runs a bench client inside srt, pointed at the proxy srt announces in
HTTP_PROXY (srt removes the network; only its proxy is reachable, with
credentials in the URL). NO_PROXY is dropped: srt lists 127.0.0.1 in it,
but the origin is on the host's loopback, reachable only through the proxy.

  via_env_proxy.py conn_latency BIN ORIGIN_PORT PATH COUNT
  via_env_proxy.py wrk LUA_SCRIPT WRK_ARGS... PROXY
  via_env_proxy.py CMD ARGS...        (the word PROXY in ARGS becomes the proxy URL)
"""

import base64
import os
import socket
import sys
import urllib.parse

url = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")
if not url:
    sys.exit("via_env_proxy.py: no HTTP_PROXY in the environment")
for name in ("NO_PROXY", "no_proxy"):
    os.environ.pop(name, None)
u = urllib.parse.urlsplit(url)
auth = base64.b64encode(
    f"{urllib.parse.unquote(u.username or '')}:{urllib.parse.unquote(u.password or '')}".encode()).decode()
ip = socket.getaddrinfo(u.hostname, u.port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
args = sys.argv[1:]
if args[0] == "conn_latency":
    binary, origin_port, path, count = args[1:5]
    cmd = [binary, ip, str(u.port), path, count, "--absolute", f"127.0.0.1:{origin_port}", "--auth", auth]
elif args[0] == "wrk":
    lua = args[1]
    cmd = ["wrk", "-s", lua, "-H", f"Proxy-Authorization: Basic {auth}",
           *[f"http://{ip}:{u.port}/" if a == "PROXY" else a for a in args[2:]]]
else:
    cmd = [a.replace("PROXY", url) for a in args]
os.execvp(cmd[0], cmd)
