#!/usr/bin/env bash
# Builds the real Thanos binary (v0.42.5, all components) that the compat
# tests run against levitated, and caches it. Idempotent: a second run with
# the same wrapper module prints the cached path and builds nothing.
#
# Thanos needs go >= 1.26.10 and its own replace directives, so it is built
# from the wrapper module in compat/peers/thanos (go.mod, go.sum and a tools
# file that imports cmd/thanos), never from levitated's modules, with
# GOTOOLCHAIN=go1.27.3 (the go command fetches that toolchain from the module
# proxy once).
#
# Usage: compat/peers/build-thanos.sh     prints the binary's path on stdout
# Env:   LEVITATED_PEERS_DIR              cache root (default ~/.cache/levitated-peers)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/thanos"
version=v0.42.5
cache="${LEVITATED_PEERS_DIR:-$HOME/.cache/levitated-peers}"

# Thanos' release build tags (.promu.yml): its labelpb casts Prometheus'
# labels to its own without copying, which only works with slicelabels; a
# build without them panics in the Querier and the sidecar on the first
# label set (seen with the recipe in ../shared/MODULES.md).
tags=netgo,slicelabels
# The cache key is the wrapper module and the tags: a change to go.mod or
# go.sum (another Thanos version, another replace) builds into another
# directory.
key="$({ cat "$mod/go.mod" "$mod/go.sum"; echo "$tags"; } | sha256sum | cut -c1-12)"
dir="$cache/thanos-$version-$key"
bin="$dir/thanos"

if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$dir"
tmp="$(mktemp "$dir/.thanos.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
echo "build-thanos.sh: building Thanos $version into $dir (a few minutes the first time)" >&2
# GOFLAGS from the caller (CI sets -mod=readonly) apply; go.sum is committed.
(cd "$mod" && GOTOOLCHAIN=go1.27.3 GOWORK=off go build -trimpath -tags "$tags" -o "$tmp" github.com/thanos-io/thanos/cmd/thanos) >&2
"$tmp" --version >/dev/null 2>&1 || { echo "build-thanos.sh: the built binary does not run" >&2; exit 1; }
mv -f "$tmp" "$bin" # atomic: a concurrent run sees the whole binary or none
echo "$bin"
