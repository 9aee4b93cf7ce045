# Sourced by the scripts that run what cargo built.

# Where cargo puts what it builds: CARGO_TARGET_DIR, a .cargo/config's
# build.target-dir, or target/ beside the workspace. Only cargo knows which,
# so ask it instead of assuming target/.
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Python's venv module (Debian's python3-venv), installed when missing.
need_python_venv() {
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "installing Debian's python3-venv package" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
}
