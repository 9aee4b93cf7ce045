#!/usr/bin/env bash
# `make release`: every artefact of a release, built from this checkout into
# RELEASE_DIR ($(cargo target dir)/release-artefacts by default), then each
# one installed and run (scripts/release-check.sh):
#
#   tidewright-VERSION-TARGET.tar.gz   both binaries, stripped; completions,
#                                      man pages, LICENSE, README, CHANGELOG
#   tidewright_VERSION-1_ARCH.deb      the same, plus systemd units (cargo-deb)
#   tidewright-VERSION-*.whl, .tar.gz  the PyPI package: the command and the
#                                      Python client (maturin), and its sdist
#   tidewright-VERSION.tgz             the Helm chart
#   tidewright-VERSION.cdx.json        the SBOM (CycloneDX) of the binaries
#   tidewright-VERSION.oci.tar,        the control-plane and worker images
#   tidewright-worker-VERSION.oci.tar  the chart names (scripts/images.sh)
#   SHA256SUMS                         of all of the above
#
# and every crate packaged as crates.io takes it (cargo publish --dry-run);
# the check installs the command from those packages with cargo install.
#
# The build is reproducible in its dates: SOURCE_DATE_EPOCH is the commit's
# time unless set. `cargo deny check licenses bans sources` must pass.
# RELEASE_CHECK=0 builds without the installs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

target_dir=$(cargo_target_dir)
out=${RELEASE_DIR:-$target_dir/release-artefacts}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
version=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "tidewright"))')
host=$(rustc -vV | sed -n 's/^host: //p')

# One version, said in Cargo.toml; the chart and the client say it too.
chart_version=$(sed -n 's/^version: //p' charts/tidewright/Chart.yaml)
chart_app=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/tidewright/Chart.yaml)
client_version=$(sed -n 's/^version = "\(.*\)"/\1/p' clients/python/pyproject.toml)
for said in "chart version:$chart_version" "chart appVersion:$chart_app" "clients/python:$client_version"; do
  if [ "${said#*:}" != "$version" ]; then
    echo "release: ${said%%:*} is ${said#*:}, Cargo.toml says $version" >&2
    exit 1
  fi
done

rm -rf "$out"
mkdir -p "$out"
echo "== tidewright $version for $host into $out"

# The licences and sources of every dependency, before anything is built.
./scripts/deny.sh

cargo build --release --locked -p tidewright
built=$target_dir/release
generated=$built/generated
rm -rf "$generated"
mkdir -p "$generated/completions" "$generated/man"
"$built/tidewright" completion bash >"$generated/completions/tidewright.bash"
"$built/tidewright" completion zsh >"$generated/completions/_tidewright"
"$built/tidewright" completion fish >"$generated/completions/tidewright.fish"
"$built/tidewright" man "$generated/man"
gzip -n -9 "$generated"/man/*.1
touch -d "@$SOURCE_DATE_EPOCH" "$generated"/completions/* "$generated"/man/*

# The archive.
name=tidewright-$version-$host
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/man/man1" "$stage/$name/completions"
objcopy --strip-all "$built/tidewright" "$stage/$name/tidewright"
objcopy --strip-all "$built/tidewright-sandbox-net" "$stage/$name/tidewright-sandbox-net"
cp "$generated"/man/*.1.gz "$stage/$name/man/man1/"
cp "$generated"/completions/* "$stage/$name/completions/"
cp LICENSE README.md CHANGELOG.md "$stage/$name/"
find "$stage/$name" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"

# The Debian package, from the same binaries (cargo-deb strips them).
cargo_deb=$(cargo_tool cargo-deb 3.8.0)
"$cargo_deb" deb --locked --no-build --strip -p tidewright --output "$out" >/dev/null

# The PyPI package: the client's stubs generated (as its own build does),
# then the wheel and the sdist.
venv=$(pinned_venv release "maturin==1.16.0" "twine==7.0.0" "kubernetes-validate==1.37.0" "build==1.3.0")
stubs=clients/python/src/tidewright/v1
rm -rf "$stubs" "$stage/client"
"$venv/bin/python" -m pip wheel -q --no-deps -w "$stage/client" ./clients/python >&2
rm -rf clients/python/build clients/python/src/*.egg-info
"$venv/bin/python" - "$stage/client" "$stubs" <<'PY'
import glob, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0])
for name in wheel.namelist():
    if name.startswith("tidewright/v1/"):
        wheel.extract(name, sys.argv[2].rsplit("/tidewright/v1", 1)[0])
PY
"$venv/bin/maturin" build --release --locked --quiet --out "$out"
"$venv/bin/maturin" sdist --out "$out"
rm -rf "$stubs"
"$venv/bin/twine" check --strict "$out"/*.whl "$out/tidewright-$version.tar.gz"

# The chart.
./scripts/tools.sh
.tools/bin/helm package charts/tidewright --version "$version" --app-version "$version" -d "$out" >/dev/null

# The SBOM: what maturin wrote into the wheel, the CycloneDX of the binary's
# dependency tree as cargo resolved it.
"$venv/bin/python" - "$out" "$version" <<'PY'
import glob, sys, zipfile
out, version = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(out + "/*.whl")[0])
(sbom,) = [n for n in wheel.namelist() if "/sboms/" in n and n.endswith(".cyclonedx.json")]
open(f"{out}/tidewright-{version}.cdx.json", "wb").write(wheel.read(sbom))
PY

# The images the chart names, from the archive's stripped binaries.
./scripts/images.sh "$stage/$name" "$out"

# crates.io: every crate packaged and verified as `cargo publish` would
# (each builds from its package, against the others' packages).
# (--allow-dirty: a checkout with changes makes a release too, its commit
# then says -dirty in `tidewright version`.)
cargo publish --workspace --dry-run --locked --quiet --allow-dirty
# The .crate files themselves (the dry run keeps only its dependencies'),
# for the check's `cargo install`.
rm -f "$target_dir"/package/*.crate
cargo package --workspace --exclude tidewright-tests --no-verify --locked --quiet --allow-dirty
cp "$target_dir"/package/tidewright*-"$version".crate "$stage/"

(cd "$out" && sha256sum -- * >SHA256SUMS)
echo "== artefacts"
(cd "$out" && ls -l --time-style=+ -- * | awk '{printf "%10d  %s\n", $5, $NF}')

if [ "${RELEASE_CHECK:-1}" != 0 ]; then
  ./scripts/release-check.sh "$out" "$stage"
fi
