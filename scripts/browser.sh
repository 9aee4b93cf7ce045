#!/usr/bin/env bash
# The console's browser tests drive Debian's Chromium through its WebDriver:
# installs the chromium and chromium-driver packages when they are missing
# (TIDEWRIGHT_CHROMIUM and TIDEWRIGHT_CHROMEDRIVER name others).
set -euo pipefail
chromium=${TIDEWRIGHT_CHROMIUM:-/usr/bin/chromium}
driver=${TIDEWRIGHT_CHROMEDRIVER:-/usr/bin/chromedriver}
if [ -x "$chromium" ] && [ -x "$driver" ]; then
  exit 0
fi
echo "installing Debian's chromium and chromium-driver packages" >&2
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
