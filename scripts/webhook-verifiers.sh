#!/usr/bin/env bash
# The webhook tests check every delivery as a receiver would, with the
# Standard Webhooks libraries no one here wrote: `standardwebhooks` and
# `svix` (PyPI, pinned), in a venv of their own. Cached: a second run does
# nothing. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

STANDARDWEBHOOKS_VERSION=1.1.0
SVIX_VERSION=2.9.1
venv=$(pinned_venv webhook-verifiers \
  "standardwebhooks==$STANDARDWEBHOOKS_VERSION" "svix==$SVIX_VERSION")
echo "$venv/bin/python"
