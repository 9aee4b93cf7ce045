#!/usr/bin/env bash
# `scripts/smoke.sh TIDEWRIGHT`: what each install is checked with. Runs the
# given tidewright command (an installed one: from a release archive, the
# Debian package, a wheel, cargo install) as a new user would: `tidewright
# up` in a fresh data dir on a port the system picks, one local worker with
# its steps sandboxed, a two-step shell task submitted and watched until it
# succeeds, its output read back; then stops it. Fails, saying why, when any
# of that does not happen. Needs bubblewrap (scripts/sandbox.sh).
set -euo pipefail
tidewright=${1:?usage: scripts/smoke.sh TIDEWRIGHT}
. "$(dirname "$0")/lib.sh"
data=$(mktemp -d -t tidewright-smoke-XXXXXX)
cleanup() {
  stop_up
  rm -rf "$data"
}
trap cleanup EXIT

echo "smoke: $("$tidewright" version)"
start_up "$tidewright" "$data/state" "$data/up.log"
server=$(cat "$data/state/endpoint")
cat >"$data/task.yaml" <<'TASK'
name: smoke
steps:
  - id: first
    shell: {command: [sh, -c, 'echo "{\"n\": 20}" > "$TIDEWRIGHT_OUTPUT"']}
  - id: second
    dependsOn: [first]
    shell: {command: [sh, -c, 'echo "{\"sum\": 22}" > "$TIDEWRIGHT_OUTPUT"']}
TASK
cli=("$tidewright" --server "$server" --token-file "$data/state/admin.token")
task=$("${cli[@]}" submit -f "$data/task.yaml" --watch -o name 2>"$data/watch.log") || {
  echo "smoke: the task did not succeed:" >&2
  cat "$data/watch.log" "$data/up.log" >&2
  exit 1
}
output=$("${cli[@]}" get task "$task" -o json |
  python3 -c 'import json, sys; t = json.load(sys.stdin); print(json.dumps(next(s for s in t["steps"] if s["id"] == "second")["output"], sort_keys=True))')
if [ "$output" != '{"sum": 22}' ]; then
  echo "smoke: task $task's output is $output, not {\"sum\": 22}" >&2
  exit 1
fi
echo "smoke: task $task succeeded on $server with $tidewright"
