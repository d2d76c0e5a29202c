#!/usr/bin/env python3
"""Turns `ctest --show-only=json-v1` into the guest's list of test commands:
one `run_test NAME TIMEOUT [VAR=VALUE...] -- COMMAND...` line per test, with
ctest's own environment and timeout, so the guest runs exactly what ctest
would run on the host."""
import json
import shlex
import sys

with open(sys.argv[1]) as f:
    listing = json.load(f)
for test in listing.get("tests", []):
    props = {p["name"]: p["value"] for p in test.get("properties", [])}
    env = props.get("ENVIRONMENT", [])
    timeout = int(float(props.get("TIMEOUT", 900)))
    words = ["run_test", test["name"], str(timeout), *env, "--", *test["command"]]
    print(" ".join(shlex.quote(w) for w in words))
