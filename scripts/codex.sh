#!/usr/bin/env bash
# Installs Codex, pinned, into .tools/codex (see scripts/agent-cli.sh).
exec "$(dirname "$0")/agent-cli.sh" codex
