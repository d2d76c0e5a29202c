#!/usr/bin/env python3
"""The proxy batches audit records per wake-up; none may be lost when the
run ends: the loader closes the proxy's stop pipe, the proxy flushes and
exits (it cannot be signalled once pinfold has dropped its capabilities),
and only a proxy that does not stop is killed."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

COUNT = 200

# One keep-alive connection, COUNT requests back to back, then exit at once:
# the last records are the ones a killed proxy would lose.
CLIENT = r"""
import http.client
c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
ok = 0
for i in range(COUNT):
    c.request("GET", "/items/%d" % i if i % 2 == 0 else "/denied/%d" % i)
    r = c.getresponse()
    r.read()
    if r.status == 403:
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    ok += 1
print(ok)
"""


class AuditFlush(pftest.PinfoldTestCase):
    def test_every_record_of_a_burst_reaches_the_log_and_the_proxy_stops_when_asked(self):
        up = self.server()
        policy = self.write_policy(f"""
            name: flush
            rules:
              - endpoint: http://127.0.0.1:{up.port}/items/*
        """)
        code = CLIENT.replace("PORT", str(up.port)).replace("COUNT", str(COUNT))
        for _ in range(3):
            r = self.python_in_sandbox(policy, code, extra=["--log-level", "debug"])
            self.assertEqual(r.stdout.strip(), str(COUNT), r.stderr)
            allowed = r.audit_where(event="http", verdict="allow")
            denied = r.audit_where(event="http", verdict="deny")
            self.assertEqual(len(allowed), COUNT // 2, r.stderr)
            self.assertEqual(len(denied), COUNT // 2, r.stderr)
            self.assertEqual(sorted(int(x["path"].split("/")[-1]) for x in allowed + denied), list(range(COUNT)))
            self.assertIn("the proxy stopped when asked", r.stderr)
            self.assertNotIn("did not stop", r.stderr)


if __name__ == "__main__":
    pftest.main()
