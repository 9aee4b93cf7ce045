#!/usr/bin/env bash
# The real-cluster end-to-end check (`make e2e-kind`): a kind cluster, the
# two images loaded into it, the chart installed, the examples applied, and
# then: the Tasks succeed, a Task made from a TaskTemplate succeeds and one
# missing a parameter fails naming it, the pool scaled up for them and back
# to zero, and deleting a running Task cancels it. Needs docker; kind, helm and kubectl
# are fetched when missing. KEEP_CLUSTER=1 leaves the cluster up.
# E2E_STORE=postgres runs the control plane as three replicas on a
# PostgreSQL in the cluster, and first kills the leading pod: a standby
# must be ready within the lease and a few seconds, and the rest of the
# run goes through it.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-tidewright-e2e}
VERSION=${VERSION:-0.2.0}
KIND_VERSION=${KIND_VERSION:-v0.30.0}
NS=tidewright-system
STORE=${E2E_STORE:-sqlite}
export PATH="$PWD/.tools/bin:$PATH"

if ! docker info >/dev/null 2>&1; then
  echo "e2e-kind: needs a running Docker engine (docker info failed)" >&2
  exit 1
fi
./scripts/tools.sh
if ! command -v kind >/dev/null; then
  curl -fsSLo .tools/bin/kind "https://kind.sigs.k8s.io/dl/${KIND_VERSION}/kind-linux-amd64"
  chmod +x .tools/bin/kind
fi

step() { printf '\n== %s\n' "$*"; }
cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
dump() {
  kubectl -n "$NS" get agents,tasks,deployments,pods -o wide || true
  kubectl -n "$NS" logs deploy/tidewright --tail=100 || true
  kubectl -n "$NS" logs deploy/tidewright-operator --tail=100 || true
}
trap 'dump; cleanup' ERR

step "cluster"
kind create cluster --name "$CLUSTER" --wait 180s

step "images"
make images VERSION="$VERSION"
kind load docker-image --name "$CLUSTER" "ghcr.io/tidewright/tidewright:$VERSION" "ghcr.io/tidewright/tidewright-worker:$VERSION"

chart_store=()
if [ "$STORE" = postgres ]; then
  step "a PostgreSQL in the cluster"
  kubectl create namespace "$NS"
  kubectl -n "$NS" create deployment tidewright-pg --image=postgres:16-alpine --port=5432
  kubectl -n "$NS" set env deployment/tidewright-pg POSTGRES_PASSWORD=tidewright
  kubectl -n "$NS" expose deployment tidewright-pg --port=5432
  kubectl -n "$NS" rollout status deployment/tidewright-pg --timeout=5m
  kubectl -n "$NS" create secret generic tidewright-pg-url \
    --from-literal=url="postgres://postgres:tidewright@tidewright-pg.$NS.svc:5432/postgres"
  # Three replicas by default on PostgreSQL.
  chart_store=(--set store.postgresSecret.name=tidewright-pg-url)
fi

step "chart"
helm install tidewright charts/tidewright --namespace "$NS" --create-namespace \
  --set image.pullPolicy=Never "${chart_store[@]}" --wait --timeout 5m

if [ "$STORE" = postgres ]; then
  step "kill -9 of the leading replica: a standby leads"
  control_plane=app.kubernetes.io/component=control-plane
  ready_pods() {
    kubectl -n "$NS" get pods -l "$control_plane" \
      -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
      awk '$2 == "True" {print $1}'
  }
  [ "$(kubectl -n "$NS" get pods -l "$control_plane" --no-headers | wc -l)" -eq 3 ]
  leader=$(ready_pods)
  [ "$(echo "$leader" | wc -l)" -eq 1 ] # readiness is leadership: one ready pod
  killed=$(date +%s)
  kubectl -n "$NS" delete pod "$leader" --grace-period=0 --force
  for _ in $(seq 1 60); do
    next=$(ready_pods | grep -v "^$leader\$" || true)
    [ -n "$next" ] && break
    sleep 1
  done
  [ -n "$next" ]
  echo "$next leads, $(($(date +%s) - killed)) s after $leader was killed"
fi

step "a pool and tasks"
kubectl -n "$NS" apply -f deploy/examples/shell-pool.yaml
# A short idle period so scale-to-zero is seen here.
kubectl -n "$NS" patch agent shell --type merge -p '{"spec":{"scaleToZeroAfterSeconds":20}}'
kubectl -n "$NS" apply -f deploy/examples/hello-task.yaml -f deploy/examples/flaky-task.yaml

step "the pool scales up for the queue"
kubectl -n "$NS" wait agent/shell --for=jsonpath='{.status.readyReplicas}'=1 --timeout=5m

step "the tasks succeed"
for task in hello flaky; do
  kubectl -n "$NS" wait "task/$task" --for=jsonpath='{.status.phase}'=Succeeded --timeout=5m
done
kubectl -n "$NS" get tasks
kubectl -n "$NS" get events --field-selector involvedObject.kind=Task | grep -q Succeeded

step "a Task from a TaskTemplate runs; one missing a parameter fails, naming it"
cat <<'YAML' | kubectl -n "$NS" apply -f -
apiVersion: tidewright.dev/v1alpha1
kind: TaskTemplate
metadata:
  name: greet
spec:
  description: Greets someone, on the shell pool.
  parameters:
    who: {required: true}
  steps:
    - id: say
      shell: {command: [echo, "hello ${{ who }}"]}
---
apiVersion: tidewright.dev/v1alpha1
kind: Task
metadata:
  name: greet-kind
spec:
  templateRef: {name: greet}
  parameters: {who: kind}
---
apiVersion: tidewright.dev/v1alpha1
kind: Task
metadata:
  name: greet-nobody
spec:
  templateRef: {name: greet}
YAML
kubectl -n "$NS" wait task/greet-kind --for=jsonpath='{.status.phase}'=Succeeded --timeout=5m
kubectl -n "$NS" wait task/greet-nobody --for=jsonpath='{.status.phase}'=Failed --timeout=2m
kubectl -n "$NS" get task/greet-nobody -o jsonpath='{.status.message}' | grep -q 'parameters.who: required'

step "deleting a running task cancels it"
cat <<'YAML' | kubectl -n "$NS" apply -f -
apiVersion: tidewright.dev/v1alpha1
kind: Task
metadata:
  name: long
spec:
  steps:
    - id: sleep
      shell: {command: [sleep, "600"]}
YAML
kubectl -n "$NS" wait task/long --for=jsonpath='{.status.phase}'=Running --timeout=3m
id=$(kubectl -n "$NS" get task/long -o jsonpath='{.status.taskId}')
kubectl -n "$NS" delete task/long --timeout=60s
kubectl -n "$NS" port-forward svc/tidewright 17070:7070 >/dev/null 2>&1 &
forward=$!
token=$(kubectl -n "$NS" get secret tidewright-admin-token -o jsonpath='{.data.token}' | base64 -d)
for _ in $(seq 1 60); do
  if out=$(docker run --rm --network host "ghcr.io/tidewright/tidewright:$VERSION" \
      --server http://127.0.0.1:17070 --token "$token" get task "$id" -o json 2>/dev/null); then
    break
  fi
  sleep 1
done
kill "$forward"
echo "$out" | grep -q '"state": "cancelled"'

step "the idle pool scales to zero"
kubectl -n "$NS" wait agent/shell --for=jsonpath='{.status.replicas}'=0 --timeout=5m

step "passed"
