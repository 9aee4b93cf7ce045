#!/usr/bin/env bash
# Installs the real Claude Code CLI from npm into .tools/claude (cached: a
# second run does nothing). The claude-code tests run it against a mock of
# the Anthropic API on loopback.
#
# The version is pinned in scripts/claude-code.version, so a new release
# cannot change tidewright's behaviour unnoticed: the worker's stream fixtures are
# recorded from it, and a test fails when another version is installed.
# CLAUDE_CODE_VERSION=X tries another one (that test then says so).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${CLAUDE_CODE_VERSION:-$(cat scripts/claude-code.version)}
PREFIX=.tools/claude
BIN=$PREFIX/node_modules/.bin/claude
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null | cut -d' ' -f1)" = "$VERSION" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "scripts/claude.sh: npm is needed to install @anthropic-ai/claude-code" >&2
  exit 1
fi
mkdir -p "$PREFIX"
# The package ships a native binary per platform as an optional dependency;
# no install script is needed for it.
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$VERSION"
"$BIN" --version
