#!/usr/bin/env bash
# The demo: a sandboxed shell asks for two things over plain HTTP from a
# stand-in API on loopback. The policy allows one and denies the other;
# the shell is not told about any proxy. Prints both answers and the
# audit lines.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${PINFOLD_BUILD_DIR:-build}
pinfold="$build_dir/bin/pinfold"

work=$(mktemp -d /tmp/pinfold-demo.XXXXXX)
server_pid=
cleanup() {
    # The server dies of our SIGTERM (status 143): that is the expected end,
    # not the demo's result.
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 examples/demo/fake_api.py "$work/port" &
server_pid=$!
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
port=$(cat "$work/port")

sed "s/@PORT@/$port/g" examples/demo/policy.yaml > "$work/policy.yaml"

echo "== policy ($work/policy.yaml)"
"$pinfold" check "$work/policy.yaml"
echo
echo "== inside the sandbox: curl, with no proxy settings"
status=0
"$pinfold" run --policy "$work/policy.yaml" --audit "$work/audit.jsonl" -- sh -c "
    echo '\$ curl http://127.0.0.1:$port/repos/octo/demo/issues/1'
    curl -sS --max-time 10 -w '  -> HTTP %{http_code}\n' http://127.0.0.1:$port/repos/octo/demo/issues/1
    echo '\$ curl -X DELETE http://127.0.0.1:$port/repos/octo/demo'
    curl -sS --max-time 10 -X DELETE -w '  -> HTTP %{http_code}\n' http://127.0.0.1:$port/repos/octo/demo
" || status=$?
echo
echo "== audit log"
cat "$work/audit.jsonl"
exit "$status"
