"""HTTPS on loopback for pinfold's TLS tests: a test CA made with the
openssl CLI, leaf certificates for chosen names, and HTTPS servers (python
ssl) that count what reaches them. Everything lives in a temporary
directory of the test; servers bind port 0 and are stopped by the test."""
import os
import socket
import ssl
import subprocess
import threading
from http.server import ThreadingHTTPServer

import pftest


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class TestCA:
    """A CA of the test's own, and leaves it signs."""

    def __init__(self, directory, name="pinfold test CA"):
        self.dir = directory
        self.cert = os.path.join(directory, "test-ca.pem")
        self.key = os.path.join(directory, "test-ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
        self._count = 0

    def leaf(self, names):
        """(cert, key) for the DNS names / IPs in `names`."""
        self._count += 1
        base = os.path.join(self.dir, f"leaf{self._count}")
        san = ",".join(("IP:" if _is_ip(n) else "DNS:") + n for n in names)
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                    "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", base + ".key", "-out", base + ".csr", "-subj", f"/CN={names[0]}", cwd=self.dir)
        openssl("x509", "-req", "-in", base + ".csr", "-CA", self.cert, "-CAkey", self.key,
                "-CAcreateserial", "-out", base + ".pem", "-days", "2", "-extfile", ext, cwd=self.dir)
        return base + ".pem", base + ".key"


def _is_ip(name):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, name)
            return True
        except OSError:
            pass
    return False


class HttpsServer(pftest.CountingServer):
    """CountingServer behind TLS with a leaf of `ca` for `names`."""

    def __init__(self, ca, names=("localhost", "127.0.0.1"), host="127.0.0.1", handler=None, **kw):
        super().__init__(host, **kw)
        if handler is not None:
            self.server.RequestHandlerClass = handler
        cert, key = ca.leaf(list(names))
        self.cert_path = cert
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["http/1.1"])
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.handshakes = 0

    def url(self, path="/", name="localhost"):
        return f"https://{name}:{self.port}{path}"

    def fingerprint(self):
        out = subprocess.run(["openssl", "x509", "-in", self.cert_path, "-noout", "-fingerprint", "-sha256"],
                             capture_output=True, text=True, check=True).stdout
        return out.strip().split("=", 1)[1]
