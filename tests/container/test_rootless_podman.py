#!/usr/bin/env python3
"""Rootless Podman under an ordinary user's pinfold (issue 8, item 3).

As root: the local Debian 12 image (tests/container/image.py) plus curl,
scripts/setup-unprivileged.sh for uid 64100 (file capabilities on a private
copy of pinfold, delegated cgroup, bpffs), a HOME with a rootless storage
(vfs, chown errors ignored: uid 64100 has no subordinate ids here), the
image loaded into it. Then, as that user, from inside the delegated
subtree: `pinfold run --sandbox off --trusted-command -- podman run --rm --runtime runc ...`.

What holds today, measured on this host:
- The namespace sandbox cannot host rootless Podman (no_new_privs, and its
  seccomp filter refuses mount(2) even in a nested user namespace), so the
  run is hooks-only (`--sandbox off`): podman, conmon, slirp4netns and the
  container's processes all stay in the run's cgroup (rootless Podman on a
  hybrid host makes no cgroups of its own) and every hook applies.
- `--network host`: the container's egress is policed like any sandboxed
  client (allowed 200, denied 403, both audited with the container's curl
  as the executable).
- `--network slirp4netns`: the container's connect() happens in its own
  network namespace, still in the run's cgroup. By default the connect hooks
  refuse connects from another network namespace (fail closed, audited).
  With `--allow-private-netns` they pass untouched; slirp4netns, a process
  of the run in the host's namespace, makes the host-side connect, which is
  steered and policed (audited with slirp4netns as the executable), and the
  container's own loopback works. pinfold then starts the command in a
  Landlock domain of its own, so podman cannot join a pause process made
  outside the run, and nothing else in the run can enter the user's other
  namespaces (docs/security.md).
- /dev/net/tun must be 0666 (distributions' udev default) for slirp4netns;
  this host has 0600, so the test sets it for its duration.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import image  # noqa: E402
import pftest  # noqa: E402

UID = 64100
CLIENT_IMAGE = "localhost/pinfold-rootless-client:test"
SETUP = os.path.join(image.SOURCE_DIR, "scripts", "setup-unprivileged.sh")
XDG = f"/run/user/{UID}"
STATE = {}


def as_user(argv, timeout=300, **kw):
    """Runs argv as UID from inside the delegated subtree, with the user's HOME."""
    wrapper = (f"{SETUP} --enter $$ {UID} >/dev/null || exit 125; cd {STATE['home']} && "
               f"exec setpriv --reuid {UID} --regid {UID} --clear-groups --inh-caps=-all "
               f"env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin HOME={STATE['home']} XDG_RUNTIME_DIR={XDG} \"$@\"")
    return subprocess.run(["sh", "-c", wrapper, "sh", *argv], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def setUpModule():
    pftest.require_root()
    if subprocess.run(["getent", "passwd", str(UID)], capture_output=True).returncode == 0:
        raise SystemExit(f"uid {UID} has a passwd entry here; the test needs it unused")
    work = tempfile.mkdtemp(prefix="pinfold-rootless-")
    os.chmod(work, 0o755)
    STATE["work"] = work
    with tempfile.TemporaryFile(mode="w+") as log:
        try:
            if subprocess.run(["podman", "image", "exists", image.IMAGE]).returncode != 0:
                image.build_image(log)
            subprocess.run(["podman", "build", "--pull=never", *image.podman_flags(), "-t", CLIENT_IMAGE, "-f", "-",
                            HERE],
                           input=f"FROM {image.IMAGE}\nUSER root\n"
                                 "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                                 "--no-install-recommends python3 curl >/dev/null && rm -rf /var/lib/apt/lists/*\n",
                           text=True, check=True, stdout=log, stderr=subprocess.STDOUT, timeout=900)
            tar = os.path.join(work, "client.tar")
            subprocess.run(["podman", "save", "-o", tar, CLIENT_IMAGE], check=True, stdout=log,
                           stderr=subprocess.STDOUT, timeout=300)
            os.chmod(tar, 0o644)
        except Exception:
            log.seek(0)
            print(log.read()[-6000:], file=sys.stderr)
            raise
    bindir = os.path.join(work, "bin")
    os.mkdir(bindir, 0o755)
    for name in ("pinfold", "pinfold-proxy"):
        shutil.copy2(os.path.join(os.path.dirname(os.path.abspath(pftest.PINFOLD)), name), bindir)
    STATE["binary"] = os.path.join(bindir, "pinfold")
    r = subprocess.run([SETUP, "--binary", STATE["binary"], str(UID)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"setup-unprivileged.sh failed: {r.stdout}{r.stderr}")
    STATE["setup"] = True
    STATE["tun_mode"] = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    os.chmod("/dev/net/tun", 0o666)
    home = os.path.join(work, "home")
    conf = os.path.join(home, ".config", "containers")
    os.makedirs(conf)
    with open(os.path.join(conf, "storage.conf"), "w") as f:
        f.write('[storage]\ndriver = "vfs"\n[storage.options]\nignore_chown_errors = "true"\n')
    with open(os.path.join(conf, "containers.conf"), "w") as f:
        f.write('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n')
    for root, dirs, files in os.walk(home):
        for name in [root, *[os.path.join(root, n) for n in dirs + files]]:
            os.chown(name, UID, UID)
    STATE["home"] = home
    r = as_user(["podman", "load", "-i", tar])
    if r.returncode != 0:
        raise SystemExit(f"podman load as uid {UID} failed: {r.stdout}{r.stderr}")


def kill_user_processes():
    """Rootless Podman leaves a pause process (holding its user namespace)
    from `podman load`, which ran outside any pinfold run: stopped by PID."""
    for _ in range(50):
        pids = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == UID:
                    pids.append(int(entry))
            except OSError:
                pass
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        time.sleep(0.1)


def tearDownModule():
    if "tun_mode" in STATE:
        os.chmod("/dev/net/tun", STATE["tun_mode"])
    kill_user_processes()
    try:
        if STATE.get("setup"):
            r = subprocess.run([SETUP, "--binary", STATE["binary"], "--undo", str(UID)], capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0:
                raise SystemExit(f"setup-unprivileged.sh --undo failed: {r.stdout}{r.stderr}")
    finally:
        if "work" in STATE:
            shutil.rmtree(STATE["work"], ignore_errors=True)


class RootlessPodman(unittest.TestCase):
    def setUp(self):
        self.up = pftest.CountingServer("127.0.0.1")
        self.addCleanup(self.up.close)
        self.dir = tempfile.mkdtemp(prefix="run-", dir=STATE["work"])
        os.chown(self.dir, UID, UID)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.policy = os.path.join(self.dir, "policy.yaml")
        with open(self.policy, "w") as f:
            f.write(textwrap.dedent(f"""\
                name: rootless-podman
                rules:
                  - name: read-items
                    endpoint: http://api.test:{self.up.port}/items/*
                    methods: [GET]
                """))
        self.audit = os.path.join(self.dir, "audit.jsonl")

    def podman_under_pinfold(self, network, address, extra=(), script_tail=""):
        script = (f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' http://api.test:{self.up.port}/items/1; "
                  f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}\\n' -X DELETE "
                  f"http://api.test:{self.up.port}/items/1; {script_tail}true")
        r = as_user([STATE["binary"], "run", "--sandbox", "off", "--trusted-command", *extra, "--policy", self.policy, "--audit", self.audit,
                     "--host", "api.test=127.0.0.1", "--",
                     "podman", "run", "--rm", "--runtime", "runc", "--network", network,
                     "--add-host", f"api.test:{address}", "--entrypoint", "sh", CLIENT_IMAGE, "-c", script],
                    timeout=pftest.RUN_TIMEOUT * 3)
        audit = []
        if os.path.exists(self.audit):
            with open(self.audit) as f:
                audit = [json.loads(line) for line in f if line.strip()]
        return r, audit

    def test_host_network_egress_is_policed(self):
        r, audit = self.podman_under_pinfold("host", "127.0.0.1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["200", "403"], r.stderr)
        self.assertEqual([q["method"] for q in self.up.requests], ["GET"])
        http = [a for a in audit if a["event"] == "http"]
        self.assertEqual([(a["verdict"], a["method"]) for a in http], [("allow", "GET"), ("deny", "DELETE")], audit)
        for a in http:
            self.assertEqual(a["uid"], UID)
            self.assertEqual(a["host"], "api.test")

    def test_slirp4netns_with_private_netns_is_policed(self):
        # The pause process left by `podman load` is outside the run; from
        # the run's Landlock domain podman may not join its namespaces (that
        # is the point), so it must make new ones.
        kill_user_processes()
        # The container's own loopback: a server and a client inside it,
        # untouched by the hooks (bounded wait for the server to listen).
        inside = ("python3 -m http.server --bind 127.0.0.1 8000 >/dev/null 2>&1 & S=$!; "
                  "for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8000/ && break; sleep 0.1; done; "
                  "curl -sS --max-time 10 -o /dev/null -w 'inside %{http_code}\\n' http://127.0.0.1:8000/; "
                  "kill $S; ")
        r, audit = self.podman_under_pinfold("slirp4netns:allow_host_loopback=true", "10.0.2.2",
                                             extra=["--allow-private-netns"], script_tail=inside)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split("\n")[:3], ["200", "403", "inside 200"], r.stderr)
        self.assertEqual([q["method"] for q in self.up.requests], ["GET"])
        http = [a for a in audit if a["event"] == "http"]
        self.assertEqual([(a["verdict"], a["method"]) for a in http], [("allow", "GET"), ("deny", "DELETE")], audit)
        for a in http:
            self.assertEqual(a["uid"], UID)
            # slirp4netns makes the host-side connect: binaries: rules see it,
            # not the container's curl.
            self.assertIn("slirp4netns", a.get("exe", ""), a)
        self.assertEqual(len([a for a in audit if a["event"] == "private-netns"]), 1, audit)
        self.assertFalse([a for a in audit if a.get("reason") == "connect from another network namespace"], audit)

    def test_private_netns_cannot_enter_the_users_other_namespaces(self):
        # In the host's user namespace a process owns every user namespace
        # its uid made there: another rootless container's, whose network
        # namespace has an exit outside the run. With the option the command
        # runs in a Landlock domain of its own, from which no ptrace access
        # check to a process outside passes: it cannot open their namespaces.
        script = textwrap.dedent(f"""\
            unshare -rn sleep 60 & P=$!
            for i in $(seq 50); do
                [ "$(readlink /proc/$P/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.1
            done
            nsenter -U -n -t $P --preserve-credentials true && echo outside JOINED || echo outside REFUSED
            {STATE['binary']} run --sandbox off --trusted-command --allow-private-netns --policy {self.policy} --audit {self.audit} -- \\
                sh -c "nsenter -U -n -t $P --preserve-credentials true && echo inside JOINED || echo inside REFUSED"
            kill $P
        """)
        r = as_user(["sh", "-c", script], timeout=pftest.RUN_TIMEOUT * 2)
        self.assertEqual(r.stdout.split("\n")[:2], ["outside JOINED", "inside REFUSED"], r.stderr)
        self.assertIn("nsenter: cannot open /proc/", r.stderr)

    def test_slirp4netns_connects_from_the_container_netns_are_refused_without_the_option(self):
        r, audit = self.podman_under_pinfold("slirp4netns:allow_host_loopback=true", "10.0.2.2")
        self.assertEqual(r.stdout.split(), ["000", "000"], r.stderr)
        self.assertEqual(self.up.accepts, 0, "nothing may reach the server unpoliced")
        refused = [a for a in audit if a["event"] == "connect" and a["verdict"] == "deny"]
        self.assertEqual(len(refused), 2, audit)
        for a in refused:
            self.assertEqual(a["reason"], "connect from another network namespace")
            self.assertEqual(a["destination"], f"10.0.2.2:{self.up.port}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
