#!/usr/bin/env bash
# The A2A tests call tidewright's A2A endpoint with the protocol's own SDKs, which
# no one here wrote: `a2a-sdk` (PyPI) in a venv, and `@a2a-js/sdk` (npm),
# both pinned, under .tools/a2a-sdk. Cached: a second run does nothing.
# Tests that start at once may each ask: one installs, the others wait.
# Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PY_VERSION=1.3.0
JS_VERSION=1.3.0
venv=$(pinned_venv a2a-sdk "a2a-sdk==$PY_VERSION")
pinned_npm a2a-sdk "@a2a-js/sdk@$JS_VERSION"
echo "$venv/bin/python"
