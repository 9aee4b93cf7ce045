#!/usr/bin/env bash
# `scripts/release-check.sh DIR`: installs each artefact scripts/release.sh
# put in DIR as its users would, and runs a task with each (scripts/smoke.sh):
#
#   the archive  unpacked anywhere: the command, its relay beside it
#   the .deb     `apt install ./….deb` (as root), then purged
#   the wheel    `pip install` into a fresh venv: the command on the venv's
#                PATH runs a task, and `import tidewright` submits one
#   the chart    `helm lint`, then every manifest it renders (default values
#                and deploy/values-production.yaml) and every CRD
#                validated against the Kubernetes API schemas of each minor
#                version the chart supports (kubernetes-validate)
#   the images   run under bubblewrap (scripts/images-check.sh): a worker
#                from the worker image runs a task of the control plane
#                from the other
#   the crates   (with a second argument, the directory of the .crate
#                files) `cargo install` from them: the command runs a task
#   SHA256SUMS   every file's sum checked
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
out=$(cd "${1:?usage: scripts/release-check.sh RELEASE_DIR}" && pwd)
./scripts/sandbox.sh >/dev/null
work=$(mktemp -d -t tidewright-release-XXXXXX)
trap 'stop_up; rm -rf "$work"' EXIT

echo "== SHA256SUMS"
(cd "$out" && sha256sum --quiet --strict -c SHA256SUMS)

echo "== the archive"
archive=$(ls "$out"/tidewright-*-*-linux-*.tar.gz)
tar -xzf "$archive" -C "$work"
unpacked=$(ls -d "$work"/tidewright-*-linux-*/)
for f in tidewright tidewright-sandbox-net LICENSE README.md CHANGELOG.md \
  completions/tidewright.bash man/man1/tidewright.1.gz man/man1/tidewright-up.1.gz; do
  [ -e "$unpacked/$f" ] || { echo "release-check: the archive lacks $f" >&2; exit 1; }
done
./scripts/smoke.sh "$unpacked/tidewright"

echo "== the Debian package"
deb=$(ls "$out"/tidewright_*.deb)
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
if dpkg -s tidewright >/dev/null 2>&1; then
  echo "release-check: a tidewright package is installed already; not replacing it" >&2
  exit 1
fi
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$deb" >/dev/null
purge() { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get purge -y -qq tidewright >/dev/null; }
if ! (
  for f in /usr/bin/tidewright /usr/bin/tidewright-sandbox-net \
    /usr/share/man/man1/tidewright.1.gz /usr/share/bash-completion/completions/tidewright \
    /lib/systemd/system/tidewright-server.service /lib/systemd/system/tidewright-worker.service; do
    [ -e "$f" ] || { echo "release-check: the package did not install $f" >&2; exit 1; }
  done
  getent passwd tidewright >/dev/null || { echo "release-check: no tidewright user" >&2; exit 1; }
  if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/tidewright-server.service \
      /lib/systemd/system/tidewright-worker.service
  fi
  ./scripts/smoke.sh /usr/bin/tidewright
); then
  purge
  exit 1
fi
purge

echo "== the wheel, in a fresh venv"
need_python_venv
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$out"/tidewright-*.whl
./scripts/smoke.sh "$work/venv/bin/tidewright"
# The client of the same package, against the command of the same package.
data="$work/client-up"
start_up "$work/venv/bin/tidewright" "$data" "$work/client-up.log"
status=0
"$work/venv/bin/python" - "$(cat "$data/endpoint")" "$data/admin.token" <<'PY' || status=$?
import sys
import tidewright
from tidewright import v1

server, token = sys.argv[1], open(sys.argv[2]).read().strip()
with tidewright.Client(server, token) as client:
    task = client.submit_and_wait(
        {"name": "from-python", "steps": [{"id": "hello", "shell": {"command": ["sh", "-c", "echo '{\"ok\": true}' > \"$TIDEWRIGHT_OUTPUT\""]}}]},
        timeout=60,
    )
    state = v1.TaskState.Name(task.state)
    assert state == "TASK_STATE_SUCCEEDED", state
    print(f"client: task {task.id} {state} via import tidewright ({tidewright.__file__})")
PY
stop_up
[ $status -eq 0 ] || exit $status

echo "== the chart"
./scripts/tools.sh
venv=$(pinned_venv release "maturin==1.16.0" "twine==7.0.0" "kubernetes-validate==1.37.0" "build==1.3.0")
chart=$(ls "$out"/tidewright-*.tgz)
.tools/bin/helm lint --quiet "$chart" >/dev/null
.tools/bin/helm template tidewright "$chart" --namespace tidewright-system >"$work/default.yaml"
.tools/bin/helm template tidewright "$chart" --namespace tidewright-system \
  -f deploy/values-production.yaml >"$work/production.yaml"
tar -xzf "$chart" -C "$work" tidewright/crds
# Each minor version from the chart's kubeVersion floor to the newest the
# validator knows.
floor=$(sed -n 's/^kubeVersion: ">=1\.\([0-9]*\)\..*/\1/p' charts/tidewright/Chart.yaml)
newest=$("$venv/bin/python" - <<'PY'
import importlib.resources, re
root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
print(max(int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(r"v1\.(\d+)\.\d+-local(-strict)?", p.name))))
PY
)
for minor in $(seq "$floor" "$newest"); do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "1.$minor.0" \
    "$work/default.yaml" "$work/production.yaml" "$work"/tidewright/crds/*.yaml
  echo "chart: every manifest and CRD valid on Kubernetes 1.$minor"
done
echo "== the images"
./scripts/images-check.sh "$out"

crates=${2:-}
if [ -n "$crates" ]; then
  echo "== cargo install from the packaged crates"
  # Each .crate unpacked as crates.io would serve it, the others found by a
  # [patch] of crates.io; the rest resolved from crates.io as a user's
  # `cargo install tidewright` resolves them.
  mkdir -p "$work/crates"
  for crate in "$crates"/*.crate; do tar -xzf "$crate" -C "$work/crates"; done
  {
    echo "[patch.crates-io]"
    for dir in "$work"/crates/*/; do
      dir=${dir%/}
      base=$(basename "$dir")
      echo "${base%-*} = { path = \"$dir\" }"
    done
  } >"$work/patch.toml"
  cli=$(ls -d "$work"/crates/tidewright-[0-9]*)
  CARGO_TARGET_DIR="$(cargo_target_dir)/cargo-install" cargo install --quiet --config "$work/patch.toml" \
    --path "$cli" --root "$work/cargo-root"
  ls "$work/cargo-root/bin/tidewright-sandbox-net" >/dev/null
  ./scripts/smoke.sh "$work/cargo-root/bin/tidewright"
fi
echo "== release-check: every artefact installed and ran"
