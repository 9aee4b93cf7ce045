#!/usr/bin/env bash
# Steps run sandboxed by default, under bubblewrap: installs Debian's
# `bubblewrap` package when `bwrap` is missing (TIDEWRIGHT_BWRAP names another),
# then checks that it can make a sandbox here (user and process namespaces).
set -euo pipefail
bwrap=${TIDEWRIGHT_BWRAP:-bwrap}
if ! command -v "$bwrap" >/dev/null; then
  echo "installing Debian's bubblewrap package" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
fi
if ! out=$("$bwrap" --unshare-user --unshare-pid --die-with-parent --ro-bind / / true 2>&1); then
  echo "scripts/sandbox.sh: bubblewrap cannot make a sandbox here: $out" >&2
  echo "  (unprivileged user namespaces must be allowed: sysctl kernel.unprivileged_userns_clone=1, or user.max_user_namespaces > 0)" >&2
  exit 1
fi
