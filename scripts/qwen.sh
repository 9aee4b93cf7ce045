#!/usr/bin/env bash
# Installs Qwen Code, pinned, into .tools/qwen (see scripts/agent-cli.sh).
exec "$(dirname "$0")/agent-cli.sh" qwen
