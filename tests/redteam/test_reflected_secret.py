#!/usr/bin/env python3
"""An origin that reflects request headers hands back whatever the proxy
injected: the sandbox asks with the placeholder, the proxy adds the real
secret, and the answer would carry it home. Reflected in a response header,
a Content-Length body, a chunked body with the secret cut into 3-byte
chunks, a close-delimited body, and after 300 KiB of a large body (which
the proxy would otherwise splice unseen): the secret must never reach the
sandbox, and each response is audited as denied. Bodies that only look like
the secret's start (or are large and clean) arrive whole. A reflection
compressed with gzip would hide the secret from any byte search: the proxy
asks for identity on such requests, and refuses a coded answer; a byte
range would let it out piecemeal: such requests lose their Range."""
import gzip
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import credtest  # noqa: E402
import pftest  # noqa: E402

LARGE = 300 * 1024
LEAKING = ("header", "body", "chunked", "close", "large")


class ReflectingOrigin(pftest.RawOrigin):
    """Answers each request by the last part of its path with the
    Authorization header it received put somewhere in the response; records
    the headers of each request."""

    def __init__(self):
        self.auth_seen = []
        self.fields_seen = {}   # path -> {lowercase name: value}
        super().__init__()

    def serve(self, conn):
        f = conn.makefile("rb")
        while True:
            line, fields = self.read_head_fields(f)
            if not line:
                return
            path = line.split(b" ")[1].decode()
            self.auth_seen.append(fields.get("authorization", ""))
            self.fields_seen[path] = fields
            conn.sendall(self.respond(path.rsplit("/", 1)[1], fields))
            if path.endswith("/close"):
                return

    def respond(self, shape, fields):
        return self.answer(shape, fields.get("authorization", "").encode("latin-1"))

    @staticmethod
    def answer(shape, auth):
        def framed(body, extra=b""):
            return b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body

        def chunked(body, size):
            out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            for i in range(0, len(body), size):
                piece = body[i:i + size]
                out += b"%x\r\n" % len(piece) + piece + b"\r\n"
            return out + b"0\r\n\r\n"
        echo = b'{"authorization": "' + auth + b'"}\n'
        if shape == "header":
            return framed(b"ok\n", b"X-Echo: " + auth + b"\r\n")
        if shape == "body":
            return framed(echo)
        if shape == "chunked":
            return chunked(echo, 3)
        if shape == "close":
            return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + echo
        if shape == "large":
            return framed(b"a" * LARGE + echo)
        if shape == "lookalike":
            return chunked(b"the token starts with ghp_", 5)
        if shape == "clean-large":
            return framed(b"b" * LARGE + b"end\n")
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class EncodingOrigin(ReflectingOrigin):
    """Echoes the Authorization header in a gzip body: when asked for gzip
    (`honest`), always (`always`), or as a gzip transfer coding (`te`). It
    would honour no Range: the test checks none arrives."""

    def respond(self, shape, fields):
        echo = b'{"authorization": "' + fields.get("authorization", "none").encode("latin-1") + b'"}\n'
        if shape == "nobody":
            # No body to hide anything in: delivered, coding or not.
            return b"HTTP/1.1 204 No Content\r\nContent-Encoding: gzip\r\n\r\n"
        if shape == "te":
            packed = gzip.compress(echo)
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
                    b"%x\r\n" % len(packed) + packed + b"\r\n0\r\n\r\n")
        coded = shape == "always" or "gzip" in fields.get("accept-encoding", "")
        body = gzip.compress(echo) if coded else echo
        return (b"HTTP/1.1 200 OK\r\n" + (b"Content-Encoding: gzip\r\n" if coded else b"") +
                b"Content-Length: %d\r\n\r\n" % len(body) + body)


class ReflectedSecret(pftest.PinfoldTestCase):
    def test_a_reflected_secret_never_reaches_the_sandbox(self):
        secret = credtest.use_new_secret(self)
        provider = credtest.write_provider(self.tmp)
        origin = ReflectingOrigin()
        self.servers.append(origin)
        policy = self.write_policy(f"""
            name: reflect
            rules:
              - name: echo-api
                endpoint: http://127.0.0.1:{origin.port}/echo/*
                credentials: [github]
        """)
        # Each transfer: "SHAPE STATUS CURL_EXIT SHA256 BODY" (body only if short).
        script = "".join(
            f"""rm -f body hdr; touch body hdr; s=$(curl -sS --max-time 10 -D hdr -o body -w '%{{http_code}}' """
            f"""-H "Authorization: Bearer $GITHUB_TOKEN" http://127.0.0.1:{origin.port}/echo/{shape}); e=$?; """
            f"""echo "== {shape} $s $e $(sha256sum < body | cut -c1-64) $(head -c 200 body | tr '\\n' ' ')"; """
            f"""grep -i '^x-echo' hdr; """
            for shape in (*LEAKING, "lookalike", "clean-large"))
        r = self.pinfold(policy, ["sh", "-c", f"cd $(mktemp -d) && {script}"],
                         extra=["--provider", provider])
        # The proxy injected the real secret every time: the origin saw it.
        self.assertEqual(origin.auth_seen, [f"Bearer {secret}"] * 7, origin.auth_seen)
        self.assertNotIn(secret, r.stdout + r.stderr)
        self.assertNotIn(secret[:-1], r.stdout, "all but the last byte of the secret reached the sandbox")
        results = {}
        for line in r.stdout.splitlines():
            if line.startswith("== "):
                parts = line.split(" ", 5)
                results[parts[1]] = parts[2:]
        self.assertEqual(set(results), {*LEAKING, "lookalike", "clean-large"}, r.stdout + r.stderr)
        for shape in LEAKING:
            status, code = results[shape][0], results[shape][1]
            # Refused before the head (502), or cut short after it: never a
            # complete 200.
            self.assertTrue(status == "502" or code != "0", (shape, results[shape], r.stdout))
        self.assertEqual(results["lookalike"][:2], ["200", "0"], r.stdout)
        self.assertEqual(results["lookalike"][3].strip(), "the token starts with ghp_", r.stdout)
        self.assertEqual(results["clean-large"][:3],
                         ["200", "0", hashlib.sha256(b"b" * LARGE + b"end\n").hexdigest()], r.stdout)

        denied = r.audit_where(event="http", verdict="deny", rule="echo-api")
        self.assertEqual(sorted(a["path"].rsplit("/", 1)[1] for a in denied), sorted(LEAKING), r.audit)
        for rec in denied:
            self.assertIn("carries the secret of provider 'github'", rec["reason"], rec)
        allowed = r.audit_where(event="http", verdict="allow", rule="echo-api")
        self.assertEqual(sorted(a["path"].rsplit("/", 1)[1] for a in allowed), ["clean-large", "lookalike"], r.audit)
        self.assertNotIn(secret, repr(r.audit))

    def test_a_compressed_reflection_is_not_delivered(self):
        secret = credtest.use_new_secret(self)
        provider = credtest.write_provider(self.tmp)
        origin = EncodingOrigin()
        self.servers.append(origin)
        policy = self.write_policy(f"""
            name: reflect-gzip
            rules:
              - name: echo-api
                endpoint: http://127.0.0.1:{origin.port}/echo/*
                credentials: [github]
              - name: open
                endpoint: http://127.0.0.1:{origin.port}/open/*
        """)
        # curl --compressed asks for gzip and unpacks what comes: a secret
        # inside a gzip body would be printed in clear.
        script = "".join(
            f"""rm -f body; touch body; s=$(curl -sS --compressed --max-time 10 -o body -w '%{{http_code}}' """
            f"""{auth} http://127.0.0.1:{origin.port}/{path}); e=$?; echo "== {path} $s $e $(tr '\n' ' ' < body)"; """
            for path, auth in (("echo/honest", '-r 20-29 -H "Authorization: Bearer $GITHUB_TOKEN"'),
                               ("echo/always", '-H "Authorization: Bearer $GITHUB_TOKEN"'),
                               ("echo/te", '-H "Authorization: Bearer $GITHUB_TOKEN"'),
                               ("echo/nobody", '-H "Authorization: Bearer $GITHUB_TOKEN"'),
                               ("open/always", "")))
        r = self.pinfold(policy, ["sh", "-c", f"cd $(mktemp -d) && {script}"], extra=["--provider", provider])
        self.assertNotIn(secret, r.stdout + r.stderr)
        self.assertNotIn(secret[:-1], r.stdout)
        # path -> [status, curl exit, body]
        results = {line.split(" ")[1]: line.split(" ", 4)[2:] for line in r.stdout.splitlines()
                   if line.startswith("== ")}
        # Requests that carried the secret asked for the body as is; the
        # one without a secret kept what curl asked for.
        accept = {path: fields.get("accept-encoding") for path, fields in origin.fields_seen.items()}
        self.assertEqual({k: v for k, v in accept.items() if k.startswith("/echo/")},
                         {"/echo/honest": "identity", "/echo/always": "identity", "/echo/te": "identity",
                          "/echo/nobody": "identity"}, accept)
        self.assertIn("gzip", accept["/open/always"], accept)
        # A range would let the secret out a few bytes at a time, past a
        # search for the whole of it.
        self.assertNotIn("range", origin.fields_seen["/echo/honest"], origin.fields_seen)
        # Caught in the plain body it asked for: refused, or cut short.
        self.assertTrue(results["echo/honest"][0] == "502" or results["echo/honest"][1] != "0", r.stdout)
        self.assertEqual(results["echo/always"][:2], ["502", "0"], r.stdout)
        self.assertEqual(results["echo/te"][:2], ["502", "0"], r.stdout)
        self.assertEqual(results["open/always"], ["200", "0", '{"authorization": "none"} '], r.stdout)
        self.assertEqual(results["echo/nobody"][:2], ["204", "0"], r.stdout)

        denied = {a["path"].rsplit("/", 1)[1]: a["reason"] for a in r.audit_where(event="http", verdict="deny")}
        self.assertEqual(set(denied), {"honest", "always", "te"}, r.audit)
        self.assertIn("carries the secret of provider 'github'", denied["honest"])
        self.assertIn("is encoded (Content-Encoding: gzip", denied["always"])
        self.assertIn("is encoded (Transfer-Encoding: gzip", denied["te"])
        self.assertEqual(len(r.audit_where(event="http", verdict="allow", rule="open")), 1, r.audit)
        self.assertEqual([a["path"] for a in r.audit_where(event="http", verdict="allow", rule="echo-api")],
                         ["/echo/nobody"], r.audit)
        self.assertNotIn(secret, repr(r.audit))


if __name__ == "__main__":
    pftest.main()
