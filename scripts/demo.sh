#!/usr/bin/env bash
# `make demo`: builds tidewright, starts the embedded tidewright (control plane on SQLite
# plus two local workers), runs the fan-out/fan-in example with live
# progress, prints the result, and stops what it started (with KEEP=1 it
# stays up, and prints the web console's sign-in link).
#
# With ANTHROPIC_API_KEY set (or ANTHROPIC_BASE_URL pointing at an endpoint
# that speaks the Anthropic Messages API), the DAG ends in a Claude Code
# agent step that summarises what the shell steps counted: its tool calls
# stream live, and its result and cost are shown. The `claude` CLI is taken
# from TIDEWRIGHT_CLAUDE_BIN, else PATH, else installed from npm into .tools/.
# With OPENAI_API_KEY set (or OPENAI_BASE_URL for an endpoint that speaks
# OpenAI's Responses API), a Codex agent step does the same beside it; the
# `codex` CLI from TIDEWRIGHT_CODEX_BIN, else PATH, else .tools/. With
# GEMINI_API_KEY (or GOOGLE_GEMINI_BASE_URL), a Gemini CLI step too.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v python3 >/dev/null || { echo "error: the example's steps use python3; install it first" >&2; exit 1; }

# Its steps run sandboxed, under bubblewrap (Debian's package).
./scripts/sandbox.sh
# The build `make test` makes too (features unify over the workspace), so
# the two share one binary instead of relinking it for each other.
cargo build --workspace --bins
tidewright="$(cargo_target_dir)/debug/tidewright"
# TIDEWRIGHT_DEMO_DIR puts the demo's data elsewhere (the tests use a temp dir);
# the default one is emptied first.
data=${TIDEWRIGHT_DEMO_DIR:-.tidewright/demo}
[ -n "${TIDEWRIGHT_DEMO_DIR:-}" ] || rm -rf "$data"
mkdir -p "$data"

task_file=examples/fan-out-fan-in.yaml
agent_steps=()
# add_agent NAME KEY_VAR URL_VAR BIN_VAR CLI INSTALL STEP_FILE: with the
# provider's key (or its endpoint) set, finds the agent CLI (BIN_VAR, else
# PATH, else installs it into .tools/ with INSTALL), exports what `tidewright
# up`'s workers need to offer that runtime, and adds its step to the DAG.
add_agent() {
  local name=$1 key_var=$2 url_var=$3 bin_var=$4 cli=$5 install=$6 step=$7
  if [ -z "${!key_var:-}" ] && [ -z "${!url_var:-}" ]; then
    echo "(no $key_var: set it, or $url_var, to add a $name agent step)"
    return
  fi
  if [ -z "${!bin_var:-}" ]; then
    if command -v "$cli" >/dev/null; then
      printf -v "$bin_var" '%s' "$(command -v "$cli")"
    else
      "$install"
      printf -v "$bin_var" '%s' "$PWD/.tools/$cli/node_modules/.bin/$cli"
    fi
  fi
  export "${bin_var?}"
  # An endpoint of one's own may want no key; the CLI asks for one anyway.
  printf -v "$key_var" '%s' "${!key_var:-unused}"
  export "${key_var?}"
  agent_steps+=("$step")
}
add_agent "Claude Code" ANTHROPIC_API_KEY ANTHROPIC_BASE_URL TIDEWRIGHT_CLAUDE_BIN claude \
  ./scripts/claude.sh scripts/demo-agent-step.yaml
add_agent Codex OPENAI_API_KEY OPENAI_BASE_URL TIDEWRIGHT_CODEX_BIN codex \
  ./scripts/codex.sh scripts/demo-codex-step.yaml
add_agent "Gemini CLI" GEMINI_API_KEY GOOGLE_GEMINI_BASE_URL TIDEWRIGHT_GEMINI_BIN gemini \
  ./scripts/gemini.sh scripts/demo-gemini-step.yaml
if [ ${#agent_steps[@]} -gt 0 ]; then
  task_file=$data/fan-out-fan-in-agents.yaml
  cat examples/fan-out-fan-in.yaml "${agent_steps[@]}" >"$task_file"
else
  echo "(the demo runs shell steps only)"
fi

# The example's steps run python3 in their sandbox, which has /usr and the
# directories on PATH, read-only. A python3 installed elsewhere (pyenv,
# conda) is put first on PATH as itself, not as a shim that needs the rest
# of its manager, and its installation is given to the sandbox to read.
python_home=$(python3 -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')
case "$python_home" in
  /usr | /usr/*) ;;
  *)
    PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
    export TIDEWRIGHT_SANDBOX_READ_ONLY="${TIDEWRIGHT_SANDBOX_READ_ONLY:+$TIDEWRIGHT_SANDBOX_READ_ONLY:}$python_home"
    ;;
esac

# A port the system picks, so the demo never collides with a running tidewright.
"$tidewright" up --data-dir "$data" --listen 127.0.0.1:0 --workers 2 >"$data/up.log" 2>&1 &
up_pid=$!
trap 'kill -INT $up_pid 2>/dev/null; wait $up_pid 2>/dev/null || true' EXIT

deadline=$((SECONDS + 30))
until [ -s "$data/endpoint" ]; do
  kill -0 $up_pid 2>/dev/null || { cat "$data/up.log" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "error: tidewright up did not start; see $data/up.log" >&2; exit 1; }
  sleep 0.1
done
server=$(cat "$data/endpoint")
# tidewright up created an admin token beside its data; the CLI sends it.
export TIDEWRIGHT_TOKEN_FILE="$data/admin.token"
until [ "$("$tidewright" --server "$server" get agents -o name | wc -l)" = 2 ]; do
  [ $SECONDS -lt $deadline ] || { echo "error: the workers did not connect; see $data/up.log" >&2; exit 1; }
  sleep 0.1
done

echo "== tidewright is up at $server with two local workers:"
console=$(sed -n 's/^ *console *\([^ ]*\).*/\1/p' "$data/up.log" | head -n 1)
echo "   the web console: $console (KEEP=1 make demo keeps it up to look around)"
"$tidewright" --server "$server" get agents
echo
# -o name prints the id alone on stdout; the live view goes to stderr.
echo "== tidewright submit -f $task_file --watch -o name"
task=$("$tidewright" --server "$server" submit -f "$task_file" --watch -o name)
echo
echo "== tidewright get task $task"
"$tidewright" --server "$server" get task "$task"
echo
echo "== tidewright logs $task"
"$tidewright" --server "$server" logs "$task"

# KEEP=1 leaves tidewright running to look around in the web console: its
# one-time sign-in link is in what `tidewright up` printed.
if [ -n "${KEEP:-}" ]; then
  echo
  echo "== tidewright keeps running: open the console at $console"
  echo "   (the link signs you in once; afterwards paste the token in $data/admin.token). Ctrl-C stops it."
  wait $up_pid || true
fi
