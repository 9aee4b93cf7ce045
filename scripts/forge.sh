#!/usr/bin/env bash
# The pull-request tests' forge double (tests/forge/double.py) checks every
# request against the forges' own descriptions: GitHub's published OpenAPI
# document (npm @octokit/openapi, pinned) through openapi-core (PyPI,
# pinned), in a venv of its own; and the tests' webhook deliveries are
# GitHub's own examples, signed by GitHub's library. Cached: a second run
# does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

OCTOKIT_VERSION=23.0.2
OPENAPI_CORE_VERSION=0.23.1
# GitHub's example webhook deliveries, its library that signs them, and
# its description of each delivery's payload, which each one sent is
# checked against with Ajv (tests/forge/deliver.mjs).
WEBHOOKS_EXAMPLES_VERSION=7.6.1
WEBHOOKS_METHODS_VERSION=6.0.0
OPENAPI_WEBHOOKS_VERSION=12.1.0
AJV_VERSION=8.20.0
AJV_FORMATS_VERSION=3.0.1
pinned_npm forge "@octokit/openapi@$OCTOKIT_VERSION" \
  "@octokit/webhooks-examples@$WEBHOOKS_EXAMPLES_VERSION" \
  "@octokit/webhooks-methods@$WEBHOOKS_METHODS_VERSION" \
  "@octokit/openapi-webhooks@$OPENAPI_WEBHOOKS_VERSION" \
  "ajv@$AJV_VERSION" "ajv-formats@$AJV_FORMATS_VERSION"
pinned_venv forge "openapi-core==$OPENAPI_CORE_VERSION" >/dev/null
