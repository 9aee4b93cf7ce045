#!/usr/bin/env bash
# `make dist`: the tidewright binary as the images ship it, and beside it
# tidewright-sandbox-net, the small relay each sandboxed step starts with. The release build keeps
# line tables (for profiles and backtraces); here they are split off into
# tidewright.debug, and the shipped binary is stripped, with a .gnu_debuglink
# naming that file, so gdb and perf find the debug info when it is put
# beside the binary. Prints both sizes, and fails when the shipped binary
# passes DIST_MAX_MIB (56; see "Release artefacts" in docs/src/performance-history.md
# for why it is that).
#
# DIST_DIR says where the two files go ($(cargo target dir)/dist by default).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

max_mib=${DIST_MAX_MIB:-56}
cargo build --release --locked -p tidewright
target_dir=$(cargo_target_dir)
out=${DIST_DIR:-$target_dir/dist}
mkdir -p "$out"
built="$target_dir/release/tidewright"

objcopy --only-keep-debug "$built" "$out/tidewright.debug"
# The link holds the debug file's name and checksum; objcopy reads it from
# the working directory.
(cd "$out" && objcopy --strip-all --add-gnu-debuglink=tidewright.debug "$built" tidewright)

# The relay has no debug info worth keeping apart; stripped, it loads fast.
objcopy --strip-all "$target_dir/release/tidewright-sandbox-net" "$out/tidewright-sandbox-net"

mib() { awk -v bytes="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", bytes / 1048576 }'; }
echo "built    $built: $(mib "$built") MiB"
echo "shipped  $out/tidewright: $(mib "$out/tidewright") MiB (stripped)"
echo "debug    $out/tidewright.debug: $(mib "$out/tidewright.debug") MiB (kept apart)"
echo "relay    $out/tidewright-sandbox-net: $(mib "$out/tidewright-sandbox-net") MiB (stripped)"
if [ "$(stat -c %s "$out/tidewright")" -gt $((max_mib * 1048576)) ]; then
  echo "scripts/dist.sh: the shipped binary is over ${max_mib} MiB" >&2
  exit 1
fi
