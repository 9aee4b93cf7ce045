#!/usr/bin/env bash
# The pull-request tests' forge double (tests/forge/double.py) checks every
# request against the forges' own descriptions: GitHub's published OpenAPI
# document (npm @octokit/openapi, pinned) through openapi-core (PyPI,
# pinned), in a venv of its own. Cached: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

OCTOKIT_VERSION=23.0.2
OPENAPI_CORE_VERSION=0.23.1
PREFIX=.tools/forge
SPEC=$PREFIX/node_modules/@octokit/openapi/generated/api.github.com.json
STAMP=$PREFIX/installed-$OCTOKIT_VERSION-$OPENAPI_CORE_VERSION
if [ -f "$STAMP" ] && [ -f "$SPEC" ] && [ -x "$PREFIX/venv/bin/python" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "scripts/forge.sh: npm is needed to install @octokit/openapi" >&2
  exit 1
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
  "@octokit/openapi@$OCTOKIT_VERSION"
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check \
  "openapi-core==$OPENAPI_CORE_VERSION"
touch "$STAMP"
