#!/usr/bin/env bash
# The Python client's tests (part of `make test`): installs clients/python
# into a venv of its own, exactly as a user would (`pip install
# ./clients/python`, which generates its stubs from proto/), and runs its
# type hints with mypy --strict, and its pytest suite against a real `tidewright
# up` of the tidewright binary cargo built.
# Needs python3 with venv (Debian's python3-venv, installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

build_dir=$(cargo_target_dir)
venv=$(python_client_venv)

# The sdist carries its proto file: a wheel builds from it alone, away
# from the repository.
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
"$venv/bin/python" -m build --sdist --outdir "$dist" clients/python >"$dist/build.log" 2>&1 ||
  { cat "$dist/build.log" >&2; exit 1; }
rm -rf clients/python/build clients/python/src/*.egg-info
(cd "$dist" && env -u TIDEWRIGHT_PROTO_DIR "$venv/bin/python" -m pip wheel -q --no-deps -w "$dist" "$dist"/tidewright-*.tar.gz)
"$venv/bin/python" - "$dist" <<'PY'
import sys, zipfile, pathlib
(wheel,) = pathlib.Path(sys.argv[1]).glob("tidewright-*.whl")
names = zipfile.ZipFile(wheel).namelist()
assert "tidewright/v1/tidewright_pb2.py" in names, names
PY

tidewright="${TIDEWRIGHT_BIN:-$build_dir/debug/tidewright}"
[ -x "$tidewright" ] || cargo build -p tidewright
cd clients/python
# The package's type hints (it ships py.typed), checked as installed.
"$venv/bin/python" -m mypy -p tidewright --config-file pyproject.toml
TIDEWRIGHT_BIN="$tidewright" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
