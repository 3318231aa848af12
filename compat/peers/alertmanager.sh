#!/usr/bin/env bash
# alertmanager.sh — build the real Alertmanager v0.35.0 that the rule tests
# send alerts to, and print the binary's path on stdout.
#
# usage: compat/peers/alertmanager.sh [--force]
#
# The binary goes to $LEVITATED_PEERS_DIR/bin/alertmanager (default
# ~/.cache/levitated-peers). Idempotent: a binary whose embedded build info
# already names the module version is left alone, so a rerun (and CI on a
# clean clone of the same machine) costs a second. A cold build takes about
# a minute on 2 cores. Only the Go module proxy is needed.
#
# `go install github.com/prometheus/alertmanager/cmd/alertmanager@v0.35.0`
# fails: ui/web.go embeds ui/app/dist, which the module zip does not hold
# (../shared/MODULES.md). So the module directory is copied to a writable
# place, ui/app/dist gets a one-line index.html, and it is built there with
# its own go.mod. Only the web UI is a stub; the API (/api/v2/alerts,
# /api/v2/silences) is Alertmanager's own.
set -euo pipefail

MOD=github.com/prometheus/alertmanager
VERSION=v0.35.0

FORCE=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0;;
    *) echo "alertmanager.sh: unknown argument $a" >&2; exit 2;;
  esac
done

DIR="${LEVITATED_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/levitated-peers}"
mkdir -p "$DIR/bin"
DST="$DIR/bin/alertmanager"

# matches: the binary reports VERSION (stamped below; a build from a copy
# of the module has no module version in its build info).
matches() {
  [[ -x "$DST" ]] || return 1
  "$DST" --version 2>&1 | grep -q "^alertmanager, version ${VERSION#v} "
}

# One build at a time: tests of several packages may call this together.
exec 9>"$DIR/.alertmanager.lock"
flock 9

if [[ $FORCE -eq 0 ]] && matches; then
  echo "$DST"
  exit 0
fi

tmp="$(mktemp -d "$DIR/.build-am.XXXXXX")"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
echo "alertmanager.sh: building $MOD@$VERSION into $DST ..." >&2
t0=$SECONDS
# Outside any module, with the caller's GOFLAGS cleared (-mod=readonly from
# .ci/run would refuse the copied module's go.sum updates).
export GOFLAGS= GOWORK=off
src="$(cd "$tmp" && go mod download -json "$MOD@$VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
[[ -d "$src" ]] || { echo "alertmanager.sh: go mod download $MOD@$VERSION gave no directory" >&2; exit 1; }
cp -r "$src/." "$tmp/src"
chmod -R u+w "$tmp/src"
mkdir -p "$tmp/src/ui/app/dist"
echo '<html><body>Alertmanager web UI not built (levitated test build)</body></html>' > "$tmp/src/ui/app/dist/index.html"
# The version is stamped as Alertmanager's Makefile (promu) does, so that
# --version and /api/v2/status report it and matches() can read it.
(cd "$tmp/src" && go build -o "$tmp/alertmanager" \
  -ldflags "-X github.com/prometheus/common/version.Version=${VERSION#v}" \
  ./cmd/alertmanager) >&2
mv -f "$tmp/alertmanager" "$DST"
matches || { echo "alertmanager.sh: $DST does not report $MOD $VERSION" >&2; exit 1; }
echo "alertmanager.sh: built $DST in $((SECONDS - t0)) s" >&2
echo "$DST"
