#!/usr/bin/env bash
# The MCP tests call `orca mcp` as an agent would, with the official MCP
# Python SDK (`mcp` on PyPI, pinned), in a venv of its own. Cached: a
# second run does nothing. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MCP_VERSION=2.3.0
PREFIX=.tools/mcp-sdk
STAMP=$PREFIX/installed-$MCP_VERSION
mkdir -p "$PREFIX"
# Tests that start at once may each ask: one installs, the others wait.
exec 9>"$PREFIX/.lock"
flock 9
if [ ! -f "$STAMP" ] || [ ! -x "$PREFIX/venv/bin/python" ]; then
  need_python_venv
  rm -rf "$PREFIX/venv"
  python3 -m venv "$PREFIX/venv"
  "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP_VERSION"
  touch "$STAMP"
fi
echo "$PWD/$PREFIX/venv/bin/python"
