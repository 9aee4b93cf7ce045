#!/usr/bin/env bash
# The policy tools the manifest tests run, pinned, in a venv of their own
# (.tools/policy): checkov scans the chart's and the operator's manifests,
# cel-python evaluates the CRDs' CEL validation rules. Cached: a second run
# does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

CHECKOV_VERSION=3.3.30
CEL_PYTHON_VERSION=0.5.0
# The CRD schema checks (tests/policy/crd_schema.py); checkov brings it too.
JSONSCHEMA_VERSION=4.26.0
pinned_venv policy "checkov==$CHECKOV_VERSION" "cel-python==$CEL_PYTHON_VERSION" \
  "jsonschema==$JSONSCHEMA_VERSION" >/dev/null
