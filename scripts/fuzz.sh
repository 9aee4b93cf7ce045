#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time and prints what libFuzzer
# reports: executions, coverage, and any crash (which fails the run and is
# kept in fuzz/artifacts/<target>/ to reproduce with `cargo fuzz run <target> <file>`).
#
#   FUZZ_SECONDS=60 (per target)   FUZZ_TARGETS="spec_yaml spec_proto dag"
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"spec_yaml spec_proto dag claude_stream"}

if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags (the sanitizer); the machine has one
# stable toolchain, which accepts them with RUSTC_BOOTSTRAP.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

# Seeds: the shipped examples are valid task files.
mkdir -p fuzz/corpus/spec_yaml
cp examples/*.yaml fuzz/corpus/spec_yaml/

mkdir -p fuzz/results
status=0
for target in $targets; do
    echo "== $target: ${seconds}s"
    log="fuzz/results/$target.log"
    if cargo fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        result="no findings"
    else
        result="FINDING (see $log and fuzz/artifacts/$target/)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "   $runs executions, $cov, $result"
done
exit $status
