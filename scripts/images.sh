#!/usr/bin/env bash
# `scripts/images.sh BIN_DIR OUT_DIR`: the two images the chart names, built
# without Docker from Debian's packages, as OCI archives in OUT_DIR:
#
#   tidewright-VERSION.oci.tar         ghcr.io/tidewright/tidewright:VERSION
#       the control plane, the operator and shell workers: Debian bookworm
#       (debootstrap, minbase) with bubblewrap, ca-certificates and tini
#   tidewright-worker-VERSION.oci.tar  ghcr.io/tidewright/tidewright-worker:VERSION
#       the same plus git, python3, Node.js and the Claude Code CLI (the
#       version scripts/claude.sh pins), for Agent pools
#
# BIN_DIR holds the stripped tidewright and tidewright-sandbox-net
# (scripts/release.sh passes its own). Each runs as user 10001 under tini,
# which passes SIGTERM on so a worker drains. The Debian roots are made once
# and kept in .tools/images (debootstrap takes minutes); umoci makes the
# images, skopeo the archives. Needs root (debootstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
bin_dir=$(cd "${1:?usage: scripts/images.sh BIN_DIR OUT_DIR}" && pwd)
out=$(mkdir -p "${2:?usage: scripts/images.sh BIN_DIR OUT_DIR}" && cd "$2" && pwd)
version=$("$bin_dir/tidewright" version -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

need() {
  local missing=()
  for program in debootstrap umoci skopeo; do
    command -v "$program" >/dev/null || missing+=("$program")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "installing Debian's ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/images.sh: debootstrap and chroot need root" >&2
  exit 1
fi
need

# A Debian root with these packages, made once: .tools/images/NAME.
debian_root() {
  local name=$1 packages=$2
  local root=.tools/images/$name
  mkdir -p .tools/images
  (
    flock 9
    if [ ! -f "$root/.done" ] || [ "$(cat "$root/.done")" != "$packages" ]; then
      rm -rf "$root" "$root.part"
      echo "debootstrap: Debian bookworm with $packages (once)" >&2
      debootstrap --variant=minbase --include="$packages" bookworm "$root.part" \
        http://deb.debian.org/debian >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
      chroot "$root.part" useradd --uid 10001 --user-group --create-home --shell /bin/sh tidewright
      rm -rf "$root.part"/var/lib/apt/lists/* "$root.part"/var/cache/apt/*.bin \
        "$root.part"/var/cache/apt/archives/*.deb "$root.part"/var/log/*
      echo "$packages" >"$root.part/.done"
      mv "$root.part" "$root"
    fi
  ) 9>".tools/images/.lock-$name"
  echo "$PWD/$root"
}

# image NAME ROOT CMD: ROOT plus the binaries (and, for the worker, the
# Claude Code CLI) as one layer, tini first, in the OCI archive.
image() {
  local name=$1 base=$2 cmd=$3
  local work
  work=$(mktemp -d)
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:$version"
  umoci unpack --image "$work/oci:$version" "$work/bundle" >/dev/null
  cp -a "$base/." "$work/bundle/rootfs/"
  rm -f "$work/bundle/rootfs/.done"
  install -m 755 "$bin_dir/tidewright" "$bin_dir/tidewright-sandbox-net" "$work/bundle/rootfs/usr/local/bin/"
  if [ "$name" = tidewright-worker ]; then
    local claude_version
    claude_version=$(cat scripts/claude-code.version)
    npm install --silent --no-audit --no-fund --prefix "$work/bundle/rootfs/usr/local/lib/claude-code" \
      "@anthropic-ai/claude-code@$claude_version" >/dev/null
    ln -s ../lib/claude-code/node_modules/.bin/claude "$work/bundle/rootfs/usr/local/bin/claude"
  fi
  umoci repack --image "$work/oci:$version" --history.created_by "scripts/images.sh" "$work/bundle" >/dev/null
  local entrypoint=(--config.entrypoint /usr/bin/tini --config.entrypoint -- --config.entrypoint /usr/local/bin/tidewright)
  umoci config --image "$work/oci:$version" "${entrypoint[@]}" --config.cmd "$cmd" \
    --config.user 10001:10001 --config.workingdir /home/tidewright \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.source=https://github.com/tidewright/tidewright" \
    --config.label "org.opencontainers.image.licenses=Apache-2.0"
  umoci gc --layout "$work/oci"
  rm -f "$out/$name-$version.oci.tar"
  skopeo copy --quiet --insecure-policy "oci:$work/oci:$version" \
    "oci-archive:$out/$name-$version.oci.tar:ghcr.io/tidewright/$name:$version"
  rm -rf "$work"
  echo "image ghcr.io/tidewright/$name:$version: $out/$name-$version.oci.tar"
}

control=$(debian_root control-plane bubblewrap,ca-certificates,tini)
worker=$(debian_root worker bubblewrap,ca-certificates,tini,git,python3,nodejs)
image tidewright "$control" --help
image tidewright-worker "$worker" worker
