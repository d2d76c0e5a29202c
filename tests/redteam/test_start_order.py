#!/usr/bin/env python3
"""Start order: the proxy and the sandbox are started while the BPF programs
load, and the command is held until the programs are attached and the proxy
reported ready (docs/architecture.md, Fail closed). A proxy that never gets
ready must leave the held command unstarted: no trace of it in the
workspace, no decision in the audit, nothing left behind. The control case
runs the same command with the real proxy, so the absence means something."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import pftest  # noqa: E402

WS_UID = 64000   # the workspace's owner: the command runs as this uid


class HeldCommand(pftest.PinfoldTestCase):
    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)
        self.ws = os.path.join(self.tmp, "ws")
        os.mkdir(self.ws)
        os.chown(self.ws, WS_UID, WS_UID)
        self.up = self.server("127.0.0.1")
        self.policy = self.write_policy(f"""
            name: start-order
            rules:
              - name: public
                endpoint: http://127.0.0.1:{self.up.port}/public/**
        """)
        self.trace = os.path.join(self.ws, "command-ran")
        # The command leaves a file, then tries the network (allowed path).
        self.command = ["sh", "-c", f"touch {self.trace}; curl -s -o /dev/null --max-time 5 "
                                    f"http://127.0.0.1:{self.up.port}/public/x"]

    def proxy_wrapper(self, body):
        path = os.path.join(self.tmp, "proxy-wrapper")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body + "\n")
        os.chmod(path, 0o755)
        return path

    def run_with(self, proxy):
        return self.pinfold(self.policy, self.command, extra=["--workspace", self.ws, "--proxy", proxy])

    def test_control_the_real_proxy_runs_the_command(self):
        real = os.path.join(os.path.dirname(os.path.realpath(pftest.PINFOLD)), "pinfold-proxy")
        r = self.run_with(self.proxy_wrapper(f'exec {real} "$@"'))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(self.trace))
        self.assertEqual(len(r.audit_where(event="http", verdict="allow")), 1, r.audit)
        self.assertEqual(len(self.up.requests), 1)

    def test_proxy_exiting_at_once_starts_no_command(self):
        r = self.run_with("/bin/false")
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("the proxy exited before it was ready", r.stderr)
        self.assertFalse(os.path.exists(self.trace), "the held command ran without a ready proxy")
        self.assertEqual(r.audit, [], "no decision can have been made")
        self.assertEqual(self.up.accepts, 0)

    def test_proxy_dying_during_the_load_starts_no_command(self):
        # Alive when the programs start loading, gone before the handover.
        r = self.run_with(self.proxy_wrapper("sleep 0.02; exit 3"))
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("the proxy exited before it was ready", r.stderr)
        self.assertFalse(os.path.exists(self.trace), "the held command ran without a ready proxy")
        self.assertEqual(r.audit, [])
        self.assertEqual(self.up.accepts, 0)


if __name__ == "__main__":
    unittest.main()
