#!/usr/bin/env bash
# The pull-request tests' forge double (tests/forge/double.py) checks every
# request against the forges' own descriptions: GitHub's published OpenAPI
# document (npm @octokit/openapi, pinned) through openapi-core (PyPI,
# pinned), in a venv of its own. Cached: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

OCTOKIT_VERSION=23.0.2
OPENAPI_CORE_VERSION=0.23.1
pinned_npm forge "@octokit/openapi@$OCTOKIT_VERSION"
pinned_venv forge "openapi-core==$OPENAPI_CORE_VERSION" >/dev/null
