# The commands the README names. Each is a thin wrapper over a script or cargo.
.PHONY: demo test bench fuzz crds lint fmt

demo:            ## build, start the embedded orca, run the example DAG live, stop
	./scripts/demo.sh

test:            ## unit and end-to-end tests
	./scripts/test.sh

bench:           ## end-to-end throughput and latency against real processes
	./scripts/bench.sh

fuzz:            ## each cargo-fuzz target for FUZZ_SECONDS (default 60)
	./scripts/fuzz.sh

crds:            ## regenerate crds/ from the Rust types
	cargo run -q -p orca-cli -- operator crd > crds/orca.dev.yaml

lint:            ## what CI checks besides the tests
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
