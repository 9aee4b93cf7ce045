#!/usr/bin/env bash
# `make bench`: builds the release binary as `make dist` ships it and drives
# it with a benchmark of tests/benches/ (e2e.rs unless named).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Every benchmark's workers run their steps sandboxed, as by default:
# without bubblewrap a worker cannot start, and the bench would only wait.
./scripts/sandbox.sh
# The binary as the images ship it (stripped; scripts/dist.sh).
DIST_DIR="$(cargo_target_dir)/dist" ./scripts/dist.sh
# `make bench` runs e2e, then webhooks, then sandbox; `make bench-scale` runs scale (a
# million queued) and fleet (10,000 workers).
# The Python client's rates (e2e.rs runs clients/python/bench/ in each run).
if [ "${1:-e2e}" = e2e ] && [ -z "${TIDEWRIGHT_BENCH_PYTHON:-}" ]; then
  TIDEWRIGHT_BENCH_PYTHON="$(python_client_venv)/bin/python"
  export TIDEWRIGHT_BENCH_PYTHON
fi
TIDEWRIGHT_BIN="$(cargo_target_dir)/dist/tidewright" cargo bench -p tidewright-tests --bench "${1:-e2e}"
