#!/usr/bin/env bash
# The repository tests serve git over smart HTTP as a forge does: Debian's
# nginx in front of git's own `git http-backend` through fcgiwrap, with
# basic auth. Installs the nginx and fcgiwrap packages when they are
# missing (TIDEWRIGHT_NGINX and TIDEWRIGHT_FCGIWRAP name others); git is already here.
set -euo pipefail
nginx=${TIDEWRIGHT_NGINX:-/usr/sbin/nginx}
fcgiwrap=${TIDEWRIGHT_FCGIWRAP:-/usr/sbin/fcgiwrap}
if [ -x "$nginx" ] && [ -x "$fcgiwrap" ]; then
  exit 0
fi
echo "installing Debian's nginx and fcgiwrap packages" >&2
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nginx-light fcgiwrap >/dev/null 2>&1 \
  || DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nginx fcgiwrap >/dev/null
# The tests start their own nginx on a free port; the package's own
# service, when the package started one, is not needed.
"${sudo[@]}" service nginx stop >/dev/null 2>&1 || true
