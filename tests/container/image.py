"""Builds pinfold's container image for the container suites, without a
registry: the Debian 12 base comes from container/base-image.sh (debootstrap,
cached between runs as an image), then `podman build --pull=never`.

Rootful Podman 4.3 on a hybrid-cgroup host needs runc (crun refuses the
layout) and explicit ulimits (the defaults exceed what this host grants).
"""
import os
import resource
import subprocess
import time

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE = os.environ.get("PINFOLD_TEST_IMAGE", "localhost/pinfold:test")
BASE_IMAGE = "localhost/pinfold-base:bookworm"
BUILD_TIMEOUT = 2400  # a fresh machine: debootstrap, build deps, compile


def podman_flags():
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    return ["--runtime", "runc", "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def build_image(log):
    """Builds (or refreshes from the layer cache) IMAGE; returns seconds taken.
    `log` receives the tools' output."""
    start = time.monotonic()
    subprocess.run([os.path.join(SOURCE_DIR, "container", "base-image.sh"), BASE_IMAGE],
                   check=True, stdout=log, stderr=subprocess.STDOUT, timeout=900)
    subprocess.run(["podman", "build", "--pull=never", *podman_flags(), "--build-arg", f"BASE={BASE_IMAGE}",
                    "-t", IMAGE, "-f", os.path.join(SOURCE_DIR, "Containerfile"), SOURCE_DIR],
                   check=True, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
    return time.monotonic() - start


def podman_run(args, timeout=120, **kw):
    return subprocess.run(["podman", "run", "--rm", *podman_flags(), *args],
                          capture_output=True, text=True, timeout=timeout, **kw)
