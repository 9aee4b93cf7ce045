#!/usr/bin/env bash
# The A2A tests call orca's A2A endpoint with the protocol's own SDKs, which
# no one here wrote: `a2a-sdk` (PyPI) in a venv, and `@a2a-js/sdk` (npm),
# both pinned, under .tools/a2a-sdk. Cached: a second run does nothing.
# Tests that start at once may each ask: one installs, the others wait.
# Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PY_VERSION=1.3.0
JS_VERSION=1.3.0
PREFIX=.tools/a2a-sdk
STAMP=$PREFIX/installed-$PY_VERSION-$JS_VERSION
mkdir -p "$PREFIX"
exec 9>"$PREFIX/.lock"
flock 9
if [ ! -f "$STAMP" ] || [ ! -x "$PREFIX/venv/bin/python" ]; then
  need_python_venv
  if ! command -v npm >/dev/null; then
    echo "scripts/a2a-sdk.sh: npm is needed to install @a2a-js/sdk" >&2
    exit 1
  fi
  rm -rf "$PREFIX/venv" "$PREFIX/node_modules"
  python3 -m venv "$PREFIX/venv"
  "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check "a2a-sdk==$PY_VERSION"
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "@a2a-js/sdk@$JS_VERSION" >&2
  touch "$STAMP"
fi
echo "$PWD/$PREFIX/venv/bin/python"
