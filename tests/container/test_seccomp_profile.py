#!/usr/bin/env python3
"""container/seccomp-bpf.json lets a container that holds CAP_BPF (and no
CAP_SYS_ADMIN, no --privileged) call bpf(); the engine's default profile does
not, and neither does ours without CAP_BPF. Rootful podman, private cgroup
namespace, capabilities dropped but for the three container mode asks for."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import image  # noqa: E402

PROFILE = os.path.join(image.SOURCE_DIR, "container", "seccomp-bpf.json")
CAPS = ["--cap-drop", "all", "--cap-add", "CAP_BPF", "--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_PERFMON"]


class SeccompProfile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise SystemExit("the container suite needs root (rootful podman)")
        cls.dir = tempfile.mkdtemp(prefix="pinfold-seccomp-")
        cls.probe = os.path.join(cls.dir, "bpf_probe")
        subprocess.run(["gcc", "-static", "-O2", "-o", cls.probe,
                        os.path.join(os.path.dirname(__file__), "bpf_probe.c")], check=True, timeout=120)
        with tempfile.TemporaryFile(mode="w+") as log:
            subprocess.run([os.path.join(image.SOURCE_DIR, "container", "base-image.sh"), image.BASE_IMAGE],
                           check=True, stdout=log, stderr=subprocess.STDOUT, timeout=900)

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", cls.dir], check=False)

    def probe_in_container(self, *flags):
        r = image.podman_run(["--cgroupns", "private", "--network", "none", *flags,
                              "-v", f"{self.probe}:/probe:ro", image.BASE_IMAGE, "/probe"])
        return r.stdout.strip() or r.stderr.strip()

    def test_cap_bpf_with_the_shipped_profile_can_call_bpf(self):
        self.assertEqual(self.probe_in_container(*CAPS, "--security-opt", f"seccomp={PROFILE}"), "ok")

    def test_the_default_profile_refuses_bpf_without_sys_admin(self):
        self.assertEqual(self.probe_in_container(*CAPS), "EPERM")

    def test_the_shipped_profile_still_refuses_bpf_without_cap_bpf(self):
        self.assertEqual(self.probe_in_container("--cap-drop", "all", "--cap-add", "CAP_NET_ADMIN",
                                                 "--security-opt", f"seccomp={PROFILE}"), "EPERM")


if __name__ == "__main__":
    unittest.main(verbosity=2)
