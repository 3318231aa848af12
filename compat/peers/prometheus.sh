#!/usr/bin/env bash
# prometheus.sh — build the real Prometheus 3.16.0 that the compat tests run
# as a remote-write sender, and print the binary's path on stdout.
#
# usage: compat/peers/prometheus.sh [--force]
#
# The binary goes to $LEVITATED_PEERS_DIR/bin/prometheus (default
# ~/.cache/levitated-peers). Idempotent: a binary whose embedded build info
# already names the module version and build tags is left alone, so a rerun
# (and CI on a clean clone of the same machine) costs a second. A cold build
# takes 3-5 minutes on 2 cores. Only the Go module proxy is needed.
#
# Prometheus 3.16.0 is the Go module github.com/prometheus/prometheus
# v0.316.0 (../shared/MODULES.md). A plain `go install ...@v0.316.0` fails:
# the proxy refuses a pinned github.com/hashicorp/nomad/api pseudo-version
# that the Nomad service-discovery plugin needs. -tags remove_all_sd leaves
# out every service discovery but file and http (static configs still work);
# scraping, remote write, the TSDB, PromQL and the HTTP API are unaffected.
# go install builds without the web UI assets and without version ldflags.
set -euo pipefail

MOD=github.com/prometheus/prometheus
PKG=$MOD/cmd/prometheus
VERSION=v0.316.0
TAGS=remove_all_sd

FORCE=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0;;
    *) echo "prometheus.sh: unknown argument $a" >&2; exit 2;;
  esac
done

DIR="${LEVITATED_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/levitated-peers}"
mkdir -p "$DIR/bin"
DST="$DIR/bin/prometheus"

# matches: the binary's build info names MOD at VERSION, built with TAGS.
matches() {
  [[ -x "$DST" ]] || return 1
  local info
  info="$(go version -m "$DST" 2>/dev/null)" || return 1
  grep -qE "^[[:space:]]+mod[[:space:]]+$MOD[[:space:]]+$VERSION([[:space:]]|\$)" <<<"$info" &&
    grep -qE "^[[:space:]]+build[[:space:]]+-tags=$TAGS\$" <<<"$info"
}

# One build at a time: tests of several packages may call this together.
exec 9>"$DIR/.prometheus.lock"
flock 9

if [[ $FORCE -eq 0 ]] && matches; then
  echo "$DST"
  exit 0
fi

tmp="$(mktemp -d "$DIR/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "prometheus.sh: building $PKG@$VERSION (-tags $TAGS) into $DST ..." >&2
t0=$SECONDS
# Outside any module, with the caller's GOFLAGS cleared (-mod=readonly from
# .ci/run would break `go install pkg@version`), into a staging directory,
# then moved into place: an interrupted build never leaves a half binary.
(cd "$tmp" && env GOFLAGS= GOWORK=off GOBIN="$tmp/bin" go install -tags "$TAGS" "$PKG@$VERSION") >&2
mv -f "$tmp/bin/prometheus" "$DST"
matches || { echo "prometheus.sh: $DST does not report $MOD $VERSION -tags=$TAGS" >&2; exit 1; }
echo "prometheus.sh: built $DST in $((SECONDS - t0)) s" >&2
echo "$DST"
