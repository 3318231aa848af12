#!/usr/bin/env bash
# memquery.sh — query speed and memory of several levitated builds over the
# same stored data: one build ingests ../shared/peer-bench's data and
# flushes, then each build in turn is started on that data directory, runs
# the query set (nocache=1: the engine, not the results cache) and is
# stopped; the builds alternate ROUNDS times. Saves per run the query log
# (p50, result checksums) and /proc status (VmHWM = peak RSS of the run).
#
# usage: bench/memquery.sh OUTDIR SERIES DURATION NAME=BIN [NAME=BIN...]
#   env: PORT [29377], REPEAT [3], ROUNDS [2], PEERBENCH [/tmp/peerbench]
set -u
OUT=$1 SERIES=$2 DUR=$3; shift 3
PORT=${PORT:-29377}
PB=${PEERBENCH:-/tmp/peerbench}
QUERIES=${QUERIES:-$(dirname "$0")/../../shared/peer-bench/queries.txt}
D=$(mktemp -d /tmp/memquery-data.XXXXXX)
rm -rf "$OUT"; mkdir -p "$OUT"
start() {
  "$1" --listen-address 127.0.0.1:$PORT --data-dir "$D" > "$OUT/$2.server.log" 2>&1 &
  PID=$!
  for i in $(seq 300); do curl -sf -o /dev/null http://127.0.0.1:$PORT/api/v1/labels && return; sleep 1; done
}
first=${1#*=}
start "$first" ingest
END=$(( $(date +%s) / 60 * 60 ))
"$PB" ingest --url http://127.0.0.1:$PORT/api/v1/write --series "$SERIES" --duration "$DUR" --end $END \
  --pid $PID --out "$OUT/ingest.json" > "$OUT/ingest.log" 2>&1
curl -sf -XPOST http://127.0.0.1:$PORT/api/v1/admin/flush > /dev/null
kill $PID; wait $PID
for r in $(seq "${ROUNDS:-2}"); do
  for nb in "$@"; do
    n=${nb%%=*} bin=${nb#*=}
    start "$bin" "$n-$r"
    "$PB" query --url http://127.0.0.1:$PORT --queries "$QUERIES" --repeat "${REPEAT:-3}" --param nocache=1 \
      --ingest-report "$OUT/ingest.json" --pid $PID > "$OUT/$n-$r.query.log" 2>&1
    grep -E "VmRSS|VmHWM" /proc/$PID/status > "$OUT/$n-$r.status"
    kill $PID; wait $PID
  done
done
du -sb "$D" > "$OUT/du"
rm -rf "$D"
