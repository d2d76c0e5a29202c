#!/usr/bin/env python3
"""A host-side service for a pinfold sandbox (fullsend ADR-0017; docs/credentials.md).

    python3 examples/host_service.py --port 8765 --token-file /run/agent/notes.token &
    pinfold run --policy P --service notes=127.0.0.1:8765,token-file=/run/agent/notes.token -- ...

pinfold writes a fresh bearer token to the token file at every run; its proxy
adds `Authorization: Bearer <token>` to each request the policy allows for
http://notes:8765/ (the sandbox never holds the token). This server rejects
every request without it. It keeps notes in memory: GET /notes lists them,
POST /notes adds the request body as one note."""
import argparse
import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--ready-file", help="write the chosen port here once listening")
    args = ap.parse_args()
    notes = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, status, doc):
            body = json.dumps(doc).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self):
            # Read at each request: the token changes with every pinfold run.
            try:
                with open(args.token_file) as f:
                    token = f.read().strip()
            except OSError:
                return False
            got = self.headers.get_all("Authorization") or []
            return len(token) >= 32 and len(got) == 1 and hmac.compare_digest(got[0], "Bearer " + token)

        def do_GET(self):
            if not self._authorized():
                return self._send(401, {"error": "missing or wrong bearer token"})
            if self.path != "/notes":
                return self._send(404, {"error": "not found"})
            self._send(200, {"notes": notes})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if not self._authorized():
                return self._send(401, {"error": "missing or wrong bearer token"})
            if self.path != "/notes":
                return self._send(404, {"error": "not found"})
            notes.append(body.decode("utf-8", "replace"))
            self._send(201, {"count": len(notes)})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
