#!/usr/bin/env bash
# smallq.sh — the small queries' fixed costs: builds answer peer-bench's
# queries (instant, range, series and labels) back to back over the same
# stored data, each build in turn started on a copy of a data directory
# (written by peer-bench's ingest and flushed), each query run N times one
# after the other by bench/smallq as peer-bench's query pass sends it (POST,
# gzip accepted, kept-alive connection, nocache=1), then stopped. Prints per
# build and query p50 / p90 / mean ms, the server's CPU ms per query and a
# digest of the answer (equal digests: equal bodies). Builds alternate
# ROUNDS times. Run it under the bench lock.
#
# usage: bench/smallq.sh DATADIR END NAME=BIN [NAME=BIN...]
#   END: the data's last timestamp (unix seconds)
#   env: PORT [29612], N [200], ROUNDS [2], QUERIES [peer-bench's queries.txt],
#        SMALLQ [built here; pass a built bench/smallq to keep builds out of the lock],
#        ONLY [series_checkout,one_series_raw,one_series_rate,regex_raw,mem_max_1h,labels_all]
set -eu
DATA=$1 END=$2; shift 2
PORT=${PORT:-29612}
U=http://127.0.0.1:$PORT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUERIES=${QUERIES:-$ROOT/../shared/peer-bench/queries.txt}
ONLY=${ONLY-series_checkout,one_series_raw,one_series_rate,regex_raw,mem_max_1h,labels_all}
D=$(mktemp -d /tmp/smallq-data.XXXXXX)
trap 'rm -rf "$D" "$D".*' EXIT
SMALLQ=${SMALLQ:-}
if [[ -z "$SMALLQ" ]]; then SMALLQ=$D.smallq; nice -n 19 go build -o "$SMALLQ" "$ROOT/bench/smallq"; fi
cp -a "$DATA/." "$D/"
for r in $(seq "${ROUNDS:-2}"); do
  for nb in "$@"; do
    name=${nb%%=*} bin=${nb#*=}
    "$bin" --listen-address 127.0.0.1:$PORT --data-dir "$D" > "$D.$name.log" 2>&1 &
    pid=$!
    for i in $(seq 120); do curl -sf -o /dev/null $U/-/ready && break; sleep 1; done
    "$SMALLQ" -url $U -queries "$QUERIES" -only "$ONLY" -end "$END" -n "${N:-200}" -pid $pid -param nocache=1 \
      -label "$(printf 'round %d %-8s ' "$r" "$name")"
    kill $pid; wait $pid 2>/dev/null || true
  done
done
