# Sourced by the scripts that run what cargo built.

# Where cargo puts what it builds: CARGO_TARGET_DIR, a .cargo/config's
# build.target-dir, or target/ beside the workspace. Only cargo knows which,
# so ask it instead of assuming target/.
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Python's venv module (Debian's python3-venv), installed when missing.
# Installs clients/python into a venv of its own under cargo's target
# directory, as a user would (`pip install ./clients/python`, which
# generates its stubs from proto/), with its test tools; prints the venv.
python_client_venv() {
  need_python_venv
  local venv
  venv="$(cargo_target_dir)/python-client-venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # In-tree builds leave build/ and *.egg-info beside the sources; they are
  # ignored by git and removed here so every run builds the stubs afresh.
  rm -rf clients/python/build clients/python/src/*.egg-info
  "$venv/bin/python" -m pip install -q './clients/python[test]' >&2
  "$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./clients/python >&2
  rm -rf clients/python/build clients/python/src/*.egg-info
  echo "$venv"
}

need_python_venv() {
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "installing Debian's python3-venv package" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
}

# A venv of its own, .tools/NAME/venv, holding these pinned PyPI packages
# (`pkg==version`...). Made once: a stamp names the packages, so a new pin
# makes it again. Under a lock, as tests that start at once may each ask:
# one installs, the others wait. Prints the venv's path.
pinned_venv() {
  local name=$1
  shift
  local prefix=".tools/$name"
  local stamp
  stamp="$prefix/venv-$(IFS=-; echo "$*")"
  mkdir -p "$prefix"
  (
    flock 9
    if [ ! -f "$stamp" ] || [ ! -x "$prefix/venv/bin/python" ]; then
      need_python_venv
      rm -rf "$prefix/venv" "$prefix"/venv-*
      python3 -m venv "$prefix/venv"
      "$prefix/venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
      touch "$stamp"
    fi
  ) 9>"$prefix/.lock"
  echo "$PWD/$prefix/venv"
}

# These pinned npm packages (`pkg@version`...) in .tools/NAME/node_modules,
# made once and under a lock as `pinned_venv` is.
pinned_npm() {
  local name=$1
  shift
  local prefix=".tools/$name"
  local stamp
  stamp="$prefix/npm-$(IFS=-; echo "$*" | tr / _)"
  if ! command -v npm >/dev/null; then
    echo "npm is needed to install $*" >&2
    return 1
  fi
  mkdir -p "$prefix"
  (
    flock 9
    if [ ! -f "$stamp" ] || [ ! -d "$prefix/node_modules" ]; then
      rm -rf "$prefix/node_modules" "$prefix"/npm-*
      npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$@" >&2
      touch "$stamp"
    fi
  ) 9>"$prefix/.lock"
}

# A cargo-installed tool at a pinned version (`cargo_tool NAME VERSION`), in
# .tools/cargo/NAME-VERSION, built once with its own lock file (--locked);
# prints its binary's path.
cargo_tool() {
  local name=$1 version=$2
  local root="$PWD/.tools/cargo/$name-$version"
  mkdir -p "$root"
  (
    flock 9
    if [ ! -x "$root/bin/$name" ]; then
      echo "installing $name $version (cargo install, once)" >&2
      cargo install --quiet --locked --root "$root" --version "$version" "$name" >&2
    fi
  ) 9>"$root/.lock"
  echo "$root/bin/$name"
}

# `start_up TIDEWRIGHT DATA LOG`: `TIDEWRIGHT up` in the background, as a new
# user runs it (from DATA's parent, its data in DATA, on a port the system
# picks, one local worker), its output in LOG; returns once it serves (its
# endpoint file is written), with its pid in UP_PID. Fails within 60 s,
# printing LOG, when it exits or does not start; `stop_up` stops it.
start_up() {
  local tidewright=$1 data=$2 log=$3
  (cd "$(dirname "$data")" && exec "$tidewright" up --data-dir "$data" --listen 127.0.0.1:0 --workers 1) \
    >"$log" 2>&1 &
  UP_PID=$!
  local deadline=$((SECONDS + 60))
  until [ -s "$data/endpoint" ]; do
    if ! kill -0 "$UP_PID" 2>/dev/null; then
      echo "tidewright up exited:" >&2
      cat "$log" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "tidewright up did not start within 60 s:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# Stops what `start_up` started, if anything.
stop_up() {
  if [ -n "${UP_PID:-}" ]; then
    kill -INT "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
    UP_PID=
  fi
}
