#!/usr/bin/env bash
# Installs the real Gemini CLI from npm into .tools/gemini (cached: a second
# run does nothing). The gemini-cli tests run it against a mock of Google's
# Gemini API on loopback.
#
# The version is pinned in scripts/gemini.version, so a new release cannot
# change tidewright's behaviour unnoticed: the worker's stream fixtures are
# recorded from it, and a test fails when another version is installed.
# GEMINI_VERSION=X tries another one (that test then says so).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${GEMINI_VERSION:-$(cat scripts/gemini.version)}
PREFIX=.tools/gemini
BIN=$PREFIX/node_modules/.bin/gemini
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "scripts/gemini.sh: npm is needed to install @google/gemini-cli" >&2
  exit 1
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
  "@google/gemini-cli@$VERSION"
"$BIN" --version
