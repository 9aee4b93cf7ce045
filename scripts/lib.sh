# Sourced by the scripts that run what cargo built.

# Where cargo puts what it builds: CARGO_TARGET_DIR, a .cargo/config's
# build.target-dir, or target/ beside the workspace. Only cargo knows which,
# so ask it instead of assuming target/.
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
