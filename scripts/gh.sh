#!/usr/bin/env bash
# The credential broker's tests run GitHub's CLI inside a sandboxed step
# (`gh api`, its token a placeholder the worker's proxy replaces): Debian's
# `gh` package, installed when `gh` is missing.
set -euo pipefail
if ! command -v gh >/dev/null; then
  echo "installing Debian's gh package" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends gh >/dev/null
fi
