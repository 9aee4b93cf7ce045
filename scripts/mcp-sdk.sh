#!/usr/bin/env bash
# The MCP tests call `tidewright mcp` as an agent would, with the official MCP
# Python SDK (`mcp` on PyPI, pinned), in a venv of its own. Cached: a
# second run does nothing. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

MCP_VERSION=2.3.0
venv=$(pinned_venv mcp-sdk "mcp==$MCP_VERSION")
echo "$venv/bin/python"
