#!/usr/bin/env bash
# `make bench`: builds the release binary and drives it with the end-to-end
# benchmark in tests/benches/e2e.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

cargo build --release -p orca-cli
ORCA_BIN="$(cargo_target_dir)/release/orca" cargo bench -p orca-tests --bench e2e
