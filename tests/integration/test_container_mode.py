#!/usr/bin/env python3
"""Container mode: pinfold in a container that holds only CAP_BPF,
CAP_NET_ADMIN and CAP_PERFMON, whose cgroup2 is its own cgroup mounted
read-only (tests/lib/container_env.py reproduces that on the host). pinfold
attaches to that cgroup, polices every process of it but its own proxy and
resolver, and says what it cannot do."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import container_env  # noqa: E402
import fakedns  # noqa: E402
import pftest  # noqa: E402

LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lib"))


class ContainerMode(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        self.ct = container_env.ContainerCgroup("mode")
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: container
            rules:
              - name: read
                endpoint: http://127.0.0.1:{self.up.port}/items/*
                methods: [GET]
              - name: named
                endpoint: http://allowed.example:{self.up.port}/items/*
                methods: [GET]
        """)

    def tearDown(self):
        self.ct.close()
        super().tearDown()

    def run_in_container(self, command, extra=("--sandbox", "off"), **kw):
        return container_env.run_pinfold(self, self.ct, self.policy, command, extra=list(extra), **kw)

    def test_every_process_is_steered_and_the_proxy_reaches_upstream(self):
        r = self.run_in_container(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\\n%{http_code}\\n",
                                   self.up.url("/items/1"), self.up.url("/other")])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertIn("200", lines, r.stdout + r.stderr)
        self.assertIn("403", lines, r.stdout + r.stderr)
        verdicts = sorted((a["path"], a["verdict"]) for a in r.audit_where(event="http"))
        self.assertEqual(verdicts, [("/items/1", "allow"), ("/other", "deny")], r.audit)
        # Only the allowed request left; the proxy's own connect was not
        # steered back into the proxy.
        self.assertEqual([q["path"] for q in self.up.requests], ["/items/1"])
        # The job ran in the container's cgroup: the audit names it.
        self.assertEqual({a["cgroup"] for a in r.audit_where(event="http")},
                         {os.stat(self.ct.path).st_ino})

    def test_unavailable_features_are_reported_and_audited(self):
        r = self.run_in_container(["true"])
        self.assertEqual(r.returncode, 0, r.stderr)
        reasons = [a["reason"] for a in r.audit_where(event="container-mode")]
        self.assertTrue(any("read-only" in x for x in reasons), reasons)
        self.assertTrue(any("limits are unavailable" in x for x in reasons), reasons)
        self.assertTrue(any("without links" in x for x in reasons), reasons)
        self.assertTrue(any("--sandbox off" in x for x in reasons), reasons)
        self.assertIn("container mode", r.stderr)
        # Nothing was created in the read-only tree, nothing pinned.
        self.assertFalse(any(os.path.isdir(os.path.join(self.ct.path, d)) for d in os.listdir(self.ct.path)))

    def test_dns_goes_through_the_resolver_which_reaches_its_upstream(self):
        dns = fakedns.FakeUpstream({"allowed.example": ["127.0.0.1"], "denied.example": ["127.0.0.1"]})
        self.servers.append(dns)
        code = f"""
import socket, sys
sys.path.insert(0, {LIB!r})
import fakedns
for name in ("allowed.example", "denied.example"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(fakedns.build_query(name), ("192.0.2.53", 53))
    data, peer = s.recvfrom(4096)
    rcode, addrs = fakedns.parse_answer(data)
    print(name, rcode, ",".join(addrs), peer[0])
"""
        r = self.run_in_container([pftest.SANDBOX_PYTHON, "-c", code],
                                  extra=["--sandbox", "off", "--dns-upstream", dns.address])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        # The answer claims to come from the address the query went to.
        self.assertIn("allowed.example 0 127.0.0.1 192.0.2.53", lines, r.stdout + r.stderr)
        self.assertTrue(any(line.startswith("denied.example 5 ") for line in lines), r.stdout + r.stderr)
        # Only the allowed name left, through the resolver's exempt socket.
        self.assertEqual([name for name, _ in dns.asked], ["allowed.example"])
        self.assertEqual(len(r.audit_where(event="dns", verdict="allow")), 1, r.audit)

    def test_children_that_leave_the_command_are_killed_at_the_end(self):
        # No cgroup.kill in a read-only tree: pinfold reaps orphans itself.
        marker = os.path.join(self.tmp, "orphan.pid")
        r = self.run_in_container(["sh", "-c", f"(setsid sleep 300 & echo $! > {marker}) ; exit 0"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(marker) as f:
            orphan = int(f.read())
        self.assertFalse(os.path.exists(f"/proc/{orphan}") and open(f"/proc/{orphan}/stat").read().split()[2] != "Z",
                         "the orphan outlived the run")
        self.assertEqual(self.ct.pids(), [])

    def test_the_proxy_runs_as_the_jobs_uid_without_capabilities_or_as_nobody(self):
        code = """
import os
for pid in os.listdir("/proc"):
    try:
        comm = open(f"/proc/{pid}/comm").read().strip()
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        continue
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if comm == "pinfold-proxy" and int(fields["PPid"]) == os.getppid():
        print(fields["Uid"].split()[0], fields["CapEff"].strip(), fields["CapPrm"].strip(), fields["NoNewPrivs"].strip())
"""
        r = self.run_in_container([pftest.SANDBOX_PYTHON, "-c", code])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["0", "0" * 16, "0" * 16, "1"])
        # An engine's default capabilities include CAP_SETUID and CAP_KILL
        # (pinfold must still be able to stop it): then nobody.
        r = container_env.run_pinfold(self, self.ct, self.policy, [pftest.SANDBOX_PYTHON, "-c", code],
                                      caps=(*container_env.CONTAINER_CAPS, "setuid", "setgid", "kill"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["65534", "0" * 16, "0" * 16, "1"])

    def test_the_job_has_no_capabilities_and_cannot_regain_them(self):
        r = self.run_in_container(["sh", "-c", "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status"])
        self.assertEqual(r.returncode, 0, r.stderr)
        fields = dict(line.split(":\t") for line in r.stdout.splitlines())
        self.assertEqual(fields["CapEff"], "0" * 16)
        self.assertEqual(fields["CapPrm"], "0" * 16)
        # The bounding set keeps CAP_BPF (dropping it needs CAP_SETPCAP);
        # no_new_privs is what stops a setuid binary or a root exec.
        self.assertEqual(fields["NoNewPrivs"], "1")

    def test_the_namespace_sandbox_is_refused_without_its_capabilities(self):
        r = self.run_in_container(["true"], extra=[], check_clean=True)
        self.assertEqual(r.returncode, 125)
        self.assertIn("--sandbox off", r.stderr)

    def test_degraded_identity_is_refused(self):
        # Without CAP_PERFMON identity would come from /proc/<pid>/exe, but
        # the recorded pids are the host's and this /proc is the container's
        # (security review F4): refused, the job never runs.
        marker = os.path.join(self.tmp, "ran")
        r = self.run_in_container(["touch", marker], extra=["--sandbox", "off", "--allow-degraded-identity"],
                                  caps=("bpf", "net_admin"))
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("--allow-degraded-identity cannot be used", r.stderr)
        self.assertFalse(os.path.exists(marker))

    def test_a_pinfold_outside_the_containers_own_cgroup_is_refused(self):
        r = container_env.run_pinfold(self, self.ct, self.policy, ["true"], own_subdir="inner")
        self.assertEqual(r.returncode, 125)
        self.assertIn("not the root of the read-only cgroup2 mount", r.stderr)


if __name__ == "__main__":
    pftest.main()
