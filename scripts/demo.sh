#!/usr/bin/env bash
# `make demo`: builds orca, starts the embedded orca (control plane on SQLite
# plus two local workers), runs the fan-out/fan-in example with live
# progress, prints the result, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || { echo "error: the example's steps use python3; install it first" >&2; exit 1; }

cargo build -p orca-cli
orca=target/debug/orca
data=.orca/demo
rm -rf "$data"
mkdir -p "$data"

# A port the system picks, so the demo never collides with a running orca.
"$orca" up --data-dir "$data" --listen 127.0.0.1:0 --workers 2 >"$data/up.log" 2>&1 &
up_pid=$!
trap 'kill -INT $up_pid 2>/dev/null; wait $up_pid 2>/dev/null || true' EXIT

deadline=$((SECONDS + 30))
until [ -s "$data/endpoint" ]; do
  kill -0 $up_pid 2>/dev/null || { cat "$data/up.log" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "error: orca up did not start; see $data/up.log" >&2; exit 1; }
  sleep 0.1
done
server=$(cat "$data/endpoint")
# orca up created an admin token beside its data; the CLI sends it.
export ORCA_TOKEN_FILE="$data/admin.token"
until [ "$("$orca" --server "$server" get agents -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 2 ]; do
  [ $SECONDS -lt $deadline ] || { echo "error: the workers did not connect; see $data/up.log" >&2; exit 1; }
  sleep 0.1
done

echo "== orca is up at $server with two local workers:"
"$orca" --server "$server" get agents
echo
echo "== orca submit -f examples/fan-out-fan-in.yaml --watch"
"$orca" --server "$server" submit -f examples/fan-out-fan-in.yaml --watch
echo
task=$("$orca" --server "$server" get tasks -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "== orca get task $task"
"$orca" --server "$server" get task "$task"
echo
echo "== orca logs $task"
"$orca" --server "$server" logs "$task"
