#!/usr/bin/env bash
# Installs one real agent CLI from npm into .tools/<name> (cached: a second
# run does nothing): `scripts/agent-cli.sh claude|codex|gemini|qwen`. The
# agent tests run each against a mock of its provider's API on loopback.
#
# Each version is pinned in its scripts/*.version file, so a new release
# cannot change tidewright's behaviour unnoticed: the worker's stream
# fixtures are recorded from it, and a test fails when another version is
# installed. <VARIABLE>=X (below) tries another one (that test then says so).
set -euo pipefail
cd "$(dirname "$0")/.."

# name | npm package | executable | version file | variable | word of `--version`
row() {
  case "$1" in
    claude) echo "@anthropic-ai/claude-code claude claude-code.version CLAUDE_CODE_VERSION 1" ;;
    codex) echo "@openai/codex codex codex.version CODEX_VERSION 2" ;;
    gemini) echo "@google/gemini-cli gemini gemini.version GEMINI_VERSION 1" ;;
    qwen) echo "@qwen-code/qwen-code qwen qwen-code.version QWEN_CODE_VERSION 1" ;;
    *) echo "scripts/agent-cli.sh: no agent CLI named ${1:-(none)}: claude, codex, gemini or qwen" >&2; exit 2 ;;
  esac
}
NAME=${1:-}
ROW=$(row "$NAME") || exit 2
read -r PACKAGE EXE VERSION_FILE VARIABLE WORD <<<"$ROW"
VERSION=${!VARIABLE:-$(cat "scripts/$VERSION_FILE")}
PREFIX=.tools/$NAME
BIN=$PREFIX/node_modules/.bin/$EXE
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null | cut -d' ' -f"$WORD")" = "$VERSION" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "scripts/agent-cli.sh: npm is needed to install $PACKAGE" >&2
  exit 1
fi
mkdir -p "$PREFIX"
# Packages that ship a native binary per platform do so as an optional
# dependency; no install script is needed for it.
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "$PACKAGE@$VERSION"
"$BIN" --version
