#!/usr/bin/env python3
"""Derives container/seccomp-bpf.json from a container engine's default
seccomp profile (Debian's Podman: /usr/share/containers/seccomp.json).

The default allows bpf() only to a container holding CAP_SYS_ADMIN. pinfold's
container mode holds CAP_BPF + CAP_NET_ADMIN instead, so bpf() is also allowed
with CAP_BPF (as recent Docker defaults do); everything else is unchanged.

Usage: container/seccomp-profile.py [DEFAULT_PROFILE] > container/seccomp-bpf.json
"""
import json
import sys

source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"
with open(source) as f:
    profile = json.load(f)

rules = []
for rule in profile["syscalls"]:
    if "bpf" not in rule["names"]:
        rules.append(rule)
        continue
    # Take bpf out of the shared rule, then restate it on its own below.
    rest = dict(rule, names=[n for n in rule["names"] if n != "bpf"])
    if rest["names"]:
        rules.append(rest)
    if rule["action"] == "SCMP_ACT_ALLOW":
        for cap in ("CAP_SYS_ADMIN", "CAP_BPF"):
            rules.append({"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "args": [],
                          "comment": f"pinfold: bpf() with {cap}",
                          "includes": {"caps": [cap]}, "excludes": {}})
    else:
        # An error rule applies only while the container holds neither: a
        # rule is skipped when any capability in `excludes` is present.
        excl = sorted(set(rule.get("excludes", {}).get("caps", [])) | {"CAP_BPF"})
        rules.append(dict(rule, names=["bpf"], excludes=dict(rule.get("excludes", {}), caps=excl),
                          comment="pinfold: bpf() refused without CAP_SYS_ADMIN or CAP_BPF"))
profile["syscalls"] = rules
json.dump(profile, sys.stdout, indent=1)
sys.stdout.write("\n")
