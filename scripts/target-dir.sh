#!/usr/bin/env bash
# Prints where cargo builds (for the Makefile; scripts source lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo_target_dir
