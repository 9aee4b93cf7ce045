#!/usr/bin/env bash
# Installs Claude Code, pinned, into .tools/claude (see scripts/agent-cli.sh).
exec "$(dirname "$0")/agent-cli.sh" claude
