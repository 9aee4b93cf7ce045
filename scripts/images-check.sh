#!/usr/bin/env bash
# `scripts/images-check.sh DIR`: runs the images scripts/images.sh wrote to
# DIR, without Docker: each archive unpacked (skopeo, umoci) and its root run
# under bubblewrap as the image says (user 10001, tini first), on the host's
# network. The control plane from the tidewright image, a worker from the
# tidewright-worker image connecting to it, and a task submitted with the
# image's own CLI that must succeed on that worker, its step sandboxed by
# the worker inside the image.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(cd "${1:?usage: scripts/images-check.sh DIR}" && pwd)
work=$(mktemp -d -t tidewright-images-XXXXXX)
pids=()
# descendants PID: every process under PID, the deepest first.
descendants() {
  local child
  for child in $(pgrep -P "$1"); do
    descendants "$child"
    echo "$child"
  done
}
# Each image's processes run under a subshell, bwrap and tini: tini dies
# with its parent, but the programs it started would live on, reparented.
# So the whole tree is stopped, the programs first, while it still hangs
# together.
cleanup() {
  for pid in "${pids[@]}"; do
    # shellcheck disable=SC2046 # one PID a word
    kill -TERM $(descendants "$pid") "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# unpack NAME: the image's root in $work/NAME/rootfs.
unpack() {
  local archive
  archive=$(ls "$dir/$1"-[0-9]*.oci.tar)
  skopeo copy --quiet --insecure-policy "oci-archive:$archive" "oci:$work/$1.oci:image"
  umoci unpack --image "$work/$1.oci:image" "$work/$1" >/dev/null
  python3 - "$work/$1/config.json" <<'PY'
import json, sys
process = json.load(open(sys.argv[1]))["process"]
assert process["user"]["uid"] == 10001, process["user"]
assert process["args"][:3] == ["/usr/bin/tini", "--", "/usr/local/bin/tidewright"], process["args"]
PY
}

# in_image NAME [bwrap options...] -- COMMAND...: COMMAND in the image's
# root as its user, on the host's network. The host's /proc, not a new one:
# bubblewrap covers parts of a /proc it mounts, and the kernel then refuses
# the worker's own sandboxes a /proc of theirs (as a container runtime's
# masked /proc does).
in_image() {
  local name=$1
  shift
  local options=()
  while [ "$1" != -- ]; do
    options+=("$1")
    shift
  done
  shift
  bwrap --bind "$work/$name/rootfs" / --bind /proc /proc --dev /dev --tmpfs /tmp \
    --unshare-user --uid 10001 --gid 10001 --unshare-ipc --unshare-uts \
    --die-with-parent --setenv HOME /home/tidewright --chdir /home/tidewright \
    "${options[@]}" /usr/bin/tini -s -- "$@"
}

unpack tidewright
unpack tidewright-worker
mkdir -p "$work/data"

in_image tidewright --bind "$work/data" /data -- \
  /usr/local/bin/tidewright server --listen 127.0.0.1:0 --data-dir /data \
  >"$work/server.out" 2>"$work/server.log" &
pids+=($!)
deadline=$((SECONDS + 60))
until grep -q 'http://' "$work/server.out" 2>/dev/null; do
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "images-check: the control plane did not start" >&2; exit 1; }
  sleep 0.1
done
server=$(grep -o 'http://[0-9.:]*' "$work/server.out" | head -n 1)
echo "images-check: the control plane from the tidewright image serves $server"

# Its home (where its work dir is by default) writable as the image's user
# is in a pod (the image's root here belongs to the host's user 10001,
# which the namespace does not map).
mkdir -p "$work/worker-home"
in_image tidewright-worker --ro-bind "$work/data" /data --bind "$work/worker-home" /home/tidewright -- \
  /usr/local/bin/tidewright --server "$server" --token-file /data/worker.token \
  worker --name image-worker --capability shell --slots 1 \
  >"$work/worker.log" 2>&1 &
pids+=($!)

cat >"$work/data/task.yaml" <<'TASK'
name: from-images
steps:
  - id: hello
    shell: {command: [sh, -c, 'git --version && node --version && echo "{\"ok\": true}" > "$TIDEWRIGHT_OUTPUT"']}
TASK
cli() {
  in_image tidewright --ro-bind "$work/data" /data -- \
    /usr/local/bin/tidewright --server "$server" --token-file /data/admin.token "$@"
}
until cli get agents -o name 2>/dev/null | grep -qx image-worker; do
  kill -0 "${pids[1]}" 2>/dev/null || { echo "images-check: the worker exited:" >&2; cat "$work/worker.log" >&2; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "images-check: the worker did not connect" >&2; cat "$work/worker.log" >&2; exit 1; }
  sleep 0.2
done
echo "images-check: a worker from the tidewright-worker image connected"
task=$(cli submit -f /data/task.yaml --watch -o name 2>"$work/watch.log") || {
  echo "images-check: the task failed:" >&2
  cat "$work/watch.log" "$work/worker.log" >&2
  exit 1
}
cli get agents | grep -q 'image-worker.*bubblewrap' || {
  echo "images-check: the image's worker does not sandbox its steps" >&2
  cli get agents >&2
  exit 1
}
echo "images-check: task $task succeeded on the image's worker, its step under bubblewrap"
