#!/usr/bin/env bash
# Installs the real Codex CLI from npm into .tools/codex (cached: a second
# run does nothing). The codex tests run it against a mock of the OpenAI
# Responses API on loopback.
#
# The version is pinned in scripts/codex.version, so a new release cannot
# change tidewright's behaviour unnoticed: the worker's stream fixtures are
# recorded from it, and a test fails when another version is installed.
# CODEX_VERSION=X tries another one (that test then says so).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${CODEX_VERSION:-$(cat scripts/codex.version)}
PREFIX=.tools/codex
BIN=$PREFIX/node_modules/.bin/codex
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null | cut -d' ' -f2)" = "$VERSION" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "scripts/codex.sh: npm is needed to install @openai/codex" >&2
  exit 1
fi
mkdir -p "$PREFIX"
# The package ships its native binary per platform as an optional
# dependency; no install script is needed for it.
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
  "@openai/codex@$VERSION"
"$BIN" --version
