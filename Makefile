# The commands the README names. Each is a thin wrapper over a script or cargo.
.PHONY: release demo docs test api-check bench bench-soak bench-webhooks bench-schedules bench-repo bench-sandbox bench-proxy bench-agents bench-scale bench-verify bench-land bench-attempts bench-failover bench-fair bench-broker bench-steer bench-seeds dist fuzz crds console images e2e-kind lint fmt

VERSION ?= 0.2.0

demo:            ## build, start the embedded tidewright, run the example DAG live, stop
	./scripts/demo.sh

docs:            ## build the book (docs/) with mdBook into the cargo target dir
	./scripts/docs.sh

test:            ## unit and end-to-end tests
	./scripts/test.sh

api-check:       ## schemathesis against a live tidewright's OpenAPI document, every phase, a new seed (API_CHECK_SECONDS, 120)
	./scripts/api-check.sh

bench:           ## end-to-end throughput and latency against real processes, then webhooks, the sandbox and the model proxy
	./scripts/bench.sh
	./scripts/bench.sh webhooks
	./scripts/bench.sh sandbox
	./scripts/bench.sh proxy

bench-sandbox:   ## what the sandbox adds to a shell step's start, against --sandbox=off
	./scripts/bench.sh sandbox

bench-proxy:     ## what the worker's model proxy adds to an agent's streamed request
	./scripts/bench.sh proxy

bench-agents:    ## 16 agents of each runtime at once through one worker against the same CLIs started directly
	./scripts/claude.sh
	./scripts/codex.sh
	./scripts/gemini.sh
	./scripts/bench.sh agents

bench-soak:      ## steady submits for TIDEWRIGHT_SOAK_MINUTES (30) at TIDEWRIGHT_SOAK_RATE/s (1,000), TIDEWRIGHT_SOAK_RETENTION s (300; TIDEWRIGHT_SOAK_AUDIT_RETENTION the same) kept: RSS, disk, p99 per minute
	./scripts/bench.sh soak

bench-webhooks:  ## what an endpoint on task.succeeded costs, and how far behind its deliveries run
	./scripts/bench.sh webhooks

bench-schedules: ## how punctually a schedule ticking every second fires: tick to task, over 500 ticks
	./scripts/bench.sh schedules

bench-repo:      ## a step's workspace from a warm mirror against a fresh clone, their disk, and 8 agents' collisions
	./scripts/git-server.sh
	./scripts/claude.sh
	./scripts/bench.sh repo

bench-verify:    ## what a verified step's round adds beyond its checks and its agent's turn, over 20 rounds sent back
	./scripts/git-server.sh
	./scripts/claude.sh
	./scripts/bench.sh verify

bench-attempts:  ## 3 attempts of a fix across the three runtimes against 1: wall time, cost, and what choosing adds beyond the judge's calls
	./scripts/git-server.sh
	./scripts/claude.sh
	./scripts/codex.sh
	./scripts/gemini.sh
	./scripts/bench.sh attempts

bench-failover:  ## the time from a provider's 429 to the step running on its fallback's pool, for a running step (with its work and summary) and a queued one
	./scripts/git-server.sh
	./scripts/claude.sh
	./scripts/codex.sh
	./scripts/gemini.sh
	./scripts/bench.sh failover

bench-seeds:     ## a real npm, Python and Rust project (500+, 50+, 100+ packages from the public registries): time to a ready workspace cold, warm and from a seed, disk per extra workspace, 16 steps on one seed
	./scripts/bench.sh seeds

bench-land:      ## 20 tasks landed on one base through its queue and merged without it: time, tasks landed, broken commits on the base
	./scripts/git-server.sh
	./scripts/bench.sh land

bench-fair:      ## tenant a floods 200,000 tasks, then tenant b submits 100 in one call and 100 one call each: b's submit→start p50 and p99, and each tenant's share of the starts while both wait
	./scripts/bench.sh fair

bench-broker:    ## what the credential broker adds to an HTTPS request to a brokered host (TLS ended, header put in, sent on), against the host direct
	./scripts/bench.sh broker

bench-steer:     ## from `tidewright steer` to the message reaching the provider, for a Claude Code step steered mid-turn
	./scripts/claude.sh
	./scripts/bench.sh steer

bench-scale:     ## a million queued steps (memory, restart, the backlog drained), then 10,000 workers
	./scripts/bench.sh scale
	./scripts/bench.sh fleet

dist:            ## the release binary as images ship it: stripped, its debug info kept apart
	./scripts/dist.sh

fuzz:            ## each cargo-fuzz target for FUZZ_SECONDS (default 60)
	./scripts/fuzz.sh

crds:            ## regenerate crds/ (and the chart's copy) from the Rust types
	cargo run -q -p tidewright -- operator crd > crds/tidewright.dev.yaml
	cp crds/tidewright.dev.yaml charts/tidewright/crds/tidewright.dev.yaml

console:         ## rebuild the web console's bundle (crates/tidewright-server/console, checked in and embedded)
	./scripts/console.sh build

release:         ## every release artefact (archive, .deb, wheel and sdist, chart, images, SBOM, SHA256SUMS, crates checked), each installed and run
	./scripts/release.sh

images:          ## the tidewright and tidewright-worker images the chart names, without Docker (debootstrap, umoci; as root), as OCI archives
	./scripts/dist.sh
	./scripts/images.sh "$$(./scripts/target-dir.sh)/dist" "$$(./scripts/target-dir.sh)/images"

e2e-kind:        ## real-cluster end-to-end: kind, images, chart, examples (needs docker)
	./scripts/e2e-kind.sh

lint:            ## what CI checks besides the tests
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
