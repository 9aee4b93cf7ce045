#!/usr/bin/env bash
# The OpenAPI document tried as a new user would: schemathesis (PyPI,
# pinned, in a venv of its own) generates requests from
# /api/v1/openapi.json of a live embedded tidewright (`tidewright up`, a throwaway data
# dir, free ports) and checks every answer against the document, in every
# phase: examples, coverage, fuzzing and stateful (following the document's
# links). API_CHECK_SECONDS (default 120) bounds the fuzzing and stateful
# phases; API_CHECK_SEED fixes what is generated (make test fixes it, so a
# run is repeatable; `make api-check` draws a new one each time). Exits non-zero on any failure; the report is in
# $(cargo's target dir)/api-check/report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SCHEMATHESIS_VERSION=4.32.5
venv=$(pinned_venv schemathesis "schemathesis==$SCHEMATHESIS_VERSION")

target=$(cargo_target_dir)
cargo build -q -p tidewright
out="$target/api-check"
rm -rf "$out"
mkdir -p "$out"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
grpc=$(free_port)
http=$(free_port)
"$target/debug/tidewright" up --listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" \
  --data-dir "$out/data" > "$out/tidewright.log" 2>&1 &
tidewright=$!
trap 'kill $tidewright 2>/dev/null; wait $tidewright 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$http/readyz" > /dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$http/readyz" > /dev/null || { cat "$out/tidewright.log" >&2; exit 1; }

token=$(cat "$out/data/admin.token")
status=0
# Run where its cache may go: the target dir, not the checkout.
config="$PWD/scripts/schemathesis.toml"
st="$venv/bin/st"
(cd "$out" && "$st" --config-file "$config" --no-color \
  run "http://127.0.0.1:$http/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --phases examples,coverage,fuzzing,stateful \
  --checks all \
  --max-time "${API_CHECK_SECONDS:-120}" \
  ${API_CHECK_SEED:+--seed "$API_CHECK_SEED"} \
  --workers 2) > "$out/report.txt" 2>&1 || status=$?
tail -n 40 "$out/report.txt"
exit $status
