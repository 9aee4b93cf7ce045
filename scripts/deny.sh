#!/usr/bin/env bash
# The licences, bans and sources of every crate a release ships
# (deny.toml), with cargo-deny pinned in .tools/. The advisories check is
# left out: its database is fetched from GitHub, which this machine cannot
# reach.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo_deny=$(cargo_tool cargo-deny 0.20.2)
"$cargo_deny" --log-level error check licenses bans sources
echo "cargo deny: licenses, bans and sources ok"
