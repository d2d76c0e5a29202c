#!/usr/bin/env python3
"""The Containerfile builds here with no registry, and its image is what it
claims: non-root default user, entrypoint pinfold, every library the binaries
link, CA certificates, the seccomp profile for container mode."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import image  # noqa: E402


class Containerfile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise SystemExit("the container suite needs root (rootful podman, debootstrap)")
        with tempfile.TemporaryFile(mode="w+") as log:
            try:
                seconds = image.build_image(log)
            except Exception:
                log.seek(0)
                print(log.read()[-6000:], file=sys.stderr)
                raise
        print(f"image {image.IMAGE} built in {seconds:.0f} s", file=sys.stderr)

    def test_entrypoint_is_pinfold(self):
        r = image.podman_run([image.IMAGE, "help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pinfold run", r.stdout + r.stderr)

    def test_default_user_is_not_root(self):
        r = image.podman_run(["--entrypoint", "id", image.IMAGE, "-u"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(r.stdout.strip(), "0")

    def test_binaries_find_every_library(self):
        r = image.podman_run(["--entrypoint", "ldd", image.IMAGE,
                              "/usr/local/bin/pinfold", "/usr/local/bin/pinfold-proxy"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("not found", r.stdout)

    def test_policy_check_runs_unprivileged(self):
        r = image.podman_run([image.IMAGE, "check", "/usr/share/pinfold/policies/github-read.yaml"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_ca_certificates_and_seccomp_profile_are_shipped(self):
        r = image.podman_run(["--entrypoint", "ls", image.IMAGE,
                              "/etc/ssl/certs/ca-certificates.crt", "/usr/share/pinfold/seccomp-bpf.json"])
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
