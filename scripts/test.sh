#!/usr/bin/env bash
# The README's test command (`make test`): unit tests of every crate and the
# end-to-end tests in tests/, which start the real `tidewright` binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# The chart tests run the real helm (fetched once into .tools/bin).
./scripts/tools.sh
# Steps run sandboxed, under bubblewrap (Debian's package).
./scripts/sandbox.sh
# The credential broker's tests run Debian's gh (and curl) in a sandbox.
./scripts/gh.sh
# The claude-code tests run the real Claude Code CLI (from npm, cached).
./scripts/claude.sh
./scripts/codex.sh
./scripts/gemini.sh
./scripts/qwen.sh
# The console's tests: its build tools (a test rebuilds the checked-in
# bundle from its sources), and a real Chromium with its WebDriver.
./scripts/console.sh
./scripts/browser.sh
# The repository tests serve git over smart HTTP with a real web server
# (nginx, fcgiwrap and git's own http-backend).
./scripts/git-server.sh
# The manifest tests' policy scanner (checkov) and CEL implementation
# (cel-python), from PyPI, pinned.
./scripts/policy.sh
# The pull-request tests' forge double checks each call against GitHub's
# published OpenAPI description (npm @octokit/openapi, openapi-core).
./scripts/forge.sh
# The webhook tests verify every delivery with the Standard Webhooks
# libraries (standardwebhooks, svix; PyPI, pinned).
./scripts/webhook-verifiers.sh >/dev/null
# The MCP tests call tidewright's tools with the official MCP Python SDK (mcp;
# PyPI, pinned): installed once here, before the tests that use it run at
# once.
./scripts/mcp-sdk.sh >/dev/null
# The A2A tests call tidewright's endpoint with the protocol's SDKs (a2a-sdk on
# PyPI, @a2a-js/sdk on npm; pinned).
./scripts/a2a-sdk.sh >/dev/null

# The book builds (mdBook, pinned); tests/tests/docs.rs checks its links,
# and the CLI and HTTP pages are checked against the code by unit tests.
./scripts/docs.sh

# The PostgreSQL store's tests use a real server: a throwaway cluster for
# this run, unless TIDEWRIGHT_TEST_POSTGRES_URL names one already.
source scripts/postgres.sh
if [ -z "${TIDEWRIGHT_TEST_POSTGRES_URL:-}" ]; then
  postgres_start
  trap postgres_stop EXIT
fi

# End-to-end tests run the tidewright binary; `cargo test` builds another crate's
# binary only when asked.
cargo build --workspace --bins

# The Python client's pytest suite, in a venv of its own, against a real
# `tidewright up` of the binary just built.
./scripts/python-client.sh

# The OpenAPI document against a live server, as a new user's generated
# client would meet it: schemathesis, every phase, no failure allowed.
API_CHECK_SEED=${API_CHECK_SEED:-20261126} API_CHECK_SECONDS=${API_CHECK_SECONDS:-90} \
  ./scripts/api-check.sh

if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doc tests; they go first so its summary closes the run.
  cargo test --workspace --doc
  # Per-test timeouts (.config/nextest.toml) so a hang fails fast.
  cargo nextest run --workspace --no-fail-fast
else
  timeout 1800 cargo test --workspace --no-fail-fast
fi
