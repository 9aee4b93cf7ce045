#!/usr/bin/env bash
# `make docs`: builds the book in docs/ with mdBook (pinned in
# scripts/mdbook.version, installed from crates.io into .tools/mdbook once)
# into the cargo target directory, `book/`. `make test` runs it too; the
# book's pages are checked by tests/tests/docs.rs (links) and by the tests
# that make the CLI and HTTP pages (they must equal what the code says).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

VERSION=$(cat scripts/mdbook.version)
PREFIX=.tools/mdbook
BIN=$PREFIX/bin/mdbook
if ! [ -x "$BIN" ] || [ "$("$BIN" --version 2>/dev/null)" != "mdbook v$VERSION" ]; then
  # Only the renderer: no file watcher or web server, which a build does
  # not need and which would double the compile on a small machine. Built
  # apart from the workspace, so its dependencies do not mix with tidewright's.
  CARGO_TARGET_DIR="$(cargo_target_dir)/mdbook-build" \
    cargo install mdbook --version "=$VERSION" --locked --no-default-features \
    --root "$PREFIX" --quiet
fi
OUT="$(cargo_target_dir)/book"
"$BIN" build docs --dest-dir "$OUT"
echo "the book: $OUT/index.html"
