#!/usr/bin/env bash
# `make demo`: builds orca, starts the embedded orca (control plane on SQLite
# plus two local workers), runs the fan-out/fan-in example with live
# progress, prints the result, and stops what it started (with KEEP=1 it
# stays up, and prints the web console's sign-in link).
#
# With ANTHROPIC_API_KEY set (or ANTHROPIC_BASE_URL pointing at an endpoint
# that speaks the Anthropic Messages API), the DAG ends in a Claude Code
# agent step that summarises what the shell steps counted: its tool calls
# stream live, and its result and cost are shown. The `claude` CLI is taken
# from ORCA_CLAUDE_BIN, else PATH, else installed from npm into .tools/.
# With OPENAI_API_KEY set (or OPENAI_BASE_URL for an endpoint that speaks
# OpenAI's Responses API), a Codex agent step does the same beside it; the
# `codex` CLI from ORCA_CODEX_BIN, else PATH, else .tools/. With
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
orca="$(cargo_target_dir)/debug/orca"
# ORCA_DEMO_DIR puts the demo's data elsewhere (the tests use a temp dir);
# the default one is emptied first.
data=${ORCA_DEMO_DIR:-.orca/demo}
[ -n "${ORCA_DEMO_DIR:-}" ] || rm -rf "$data"
mkdir -p "$data"

task_file=examples/fan-out-fan-in.yaml
agent_steps=()
if [ -n "${ANTHROPIC_API_KEY:-}" ] || [ -n "${ANTHROPIC_BASE_URL:-}" ]; then
  if [ -z "${ORCA_CLAUDE_BIN:-}" ]; then
    if command -v claude >/dev/null; then
      ORCA_CLAUDE_BIN=$(command -v claude)
    else
      ./scripts/claude.sh
      ORCA_CLAUDE_BIN=$PWD/.tools/claude/node_modules/.bin/claude
    fi
  fi
  export ORCA_CLAUDE_BIN
  # An endpoint of one's own may want no key; the CLI asks for one anyway.
  export ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY:-unused}
  # With the key, `orca up`'s workers offer claude-code too.
  agent_steps+=(scripts/demo-agent-step.yaml)
else
  echo "(no ANTHROPIC_API_KEY: set it, or ANTHROPIC_BASE_URL, to add a Claude Code agent step)"
fi
if [ -n "${OPENAI_API_KEY:-}" ] || [ -n "${OPENAI_BASE_URL:-}" ]; then
  if [ -z "${ORCA_CODEX_BIN:-}" ]; then
    if command -v codex >/dev/null; then
      ORCA_CODEX_BIN=$(command -v codex)
    else
      ./scripts/codex.sh
      ORCA_CODEX_BIN=$PWD/.tools/codex/node_modules/.bin/codex
    fi
  fi
  export ORCA_CODEX_BIN
  # With the key, `orca up`'s workers offer codex too.
  export OPENAI_API_KEY=${OPENAI_API_KEY:-unused}
  agent_steps+=(scripts/demo-codex-step.yaml)
else
  echo "(no OPENAI_API_KEY: set it, or OPENAI_BASE_URL, to add a Codex agent step)"
fi
if [ -n "${GEMINI_API_KEY:-}" ] || [ -n "${GOOGLE_GEMINI_BASE_URL:-}" ]; then
  if [ -z "${ORCA_GEMINI_BIN:-}" ]; then
    if command -v gemini >/dev/null; then
      ORCA_GEMINI_BIN=$(command -v gemini)
    else
      ./scripts/gemini.sh
      ORCA_GEMINI_BIN=$PWD/.tools/gemini/node_modules/.bin/gemini
    fi
  fi
  export ORCA_GEMINI_BIN
  # With the key, `orca up`'s workers offer gemini-cli too.
  export GEMINI_API_KEY=${GEMINI_API_KEY:-unused}
  agent_steps+=(scripts/demo-gemini-step.yaml)
else
  echo "(no GEMINI_API_KEY: set it, or GOOGLE_GEMINI_BASE_URL, to add a Gemini CLI agent step)"
fi
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
    export ORCA_SANDBOX_READ_ONLY="${ORCA_SANDBOX_READ_ONLY:+$ORCA_SANDBOX_READ_ONLY:}$python_home"
    ;;
esac

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
until [ "$("$orca" --server "$server" get agents -o name | wc -l)" = 2 ]; do
  [ $SECONDS -lt $deadline ] || { echo "error: the workers did not connect; see $data/up.log" >&2; exit 1; }
  sleep 0.1
done

echo "== orca is up at $server with two local workers:"
console=$(sed -n 's/^ *console *\([^ ]*\).*/\1/p' "$data/up.log" | head -n 1)
echo "   the web console: $console (KEEP=1 make demo keeps it up to look around)"
"$orca" --server "$server" get agents
echo
# -o name prints the id alone on stdout; the live view goes to stderr.
echo "== orca submit -f $task_file --watch -o name"
task=$("$orca" --server "$server" submit -f "$task_file" --watch -o name)
echo
echo "== orca get task $task"
"$orca" --server "$server" get task "$task"
echo
echo "== orca logs $task"
"$orca" --server "$server" logs "$task"

# KEEP=1 leaves orca running to look around in the web console: its
# one-time sign-in link is in what `orca up` printed.
if [ -n "${KEEP:-}" ]; then
  echo
  echo "== orca keeps running: open the console at $console"
  echo "   (the link signs you in once; afterwards paste the token in $data/admin.token). Ctrl-C stops it."
  wait $up_pid || true
fi
