#!/usr/bin/env bash
# Installs the Gemini CLI, pinned, into .tools/gemini (see scripts/agent-cli.sh).
exec "$(dirname "$0")/agent-cli.sh" gemini
