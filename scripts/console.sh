#!/usr/bin/env bash
# The web console's build tools: `npm ci` into console/node_modules (cached:
# done again only when package-lock.json changes). With `build`, also
# rebuilds the bundle in crates/tidewright-server/console, which is checked in and embedded in
# the tidewright binary (so building tidewright needs no Node); a test rebuilds it from
# the sources and fails when the checked-in bundle differs.
#
# package.json pins rollup (an `overrides` entry) to a release whose every
# per-platform package the registry serves: when one is missing, npm install
# writes a lock file without it, and npm ci then refuses that lock file.
set -euo pipefail
cd "$(dirname "$0")/../console"

if ! command -v npm >/dev/null; then
  echo "scripts/console.sh: npm is needed to build the console" >&2
  exit 1
fi
stamp=node_modules/.tidewright-lockfile
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock" > "$stamp"
fi
if [ "${1:-}" = build ]; then
  npm run --silent build
fi
