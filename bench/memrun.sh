#!/usr/bin/env bash
# memrun.sh — where levitated's memory goes at a peer-bench scale: starts one
# levitated, sends ../shared/peer-bench's data with its `peerbench ingest`
# (--pid samples the server's RSS), flushes, runs the query set, and after each
# phase saves /proc status (VmHWM = peak RSS so far), a heap profile
# (/debug/pprof/heap) and /metrics (Go heap, Pebble memtables and block cache).
#
# usage: bench/memrun.sh BIN OUTDIR SERIES DURATION [levitated flags...]
#   env: PORT [29377], REPEAT (timed runs per query) [2], PEERBENCH [/tmp/peerbench]
#   build the harness: (cd ../shared/peer-bench && GOWORK=off go build -o /tmp/peerbench .)
# Several can run at once on different PORTs, to compare builds under the same load.
set -u
BIN=$1 OUT=$2 SERIES=$3 DUR=$4; shift 4
PORT=${PORT:-29377}
PB=${PEERBENCH:-/tmp/peerbench}
QUERIES=${QUERIES:-$(dirname "$0")/../../shared/peer-bench/queries.txt}
D=$(mktemp -d /tmp/memrun-data.XXXXXX)
rm -rf "$OUT"; mkdir -p "$OUT"
"$BIN" --listen-address 127.0.0.1:$PORT --data-dir "$D" "$@" > "$OUT/server.log" 2>&1 &
PID=$!
for i in $(seq 120); do curl -sf -o /dev/null http://127.0.0.1:$PORT/api/v1/labels && break; sleep 1; done
snap() {
  grep -E "VmRSS|VmHWM|RssAnon|RssFile" /proc/$PID/status > "$OUT/$1.status"
  awk '{print "cpu_ticks", $14+$15}' /proc/$PID/stat >> "$OUT/$1.status"
  curl -sf http://127.0.0.1:$PORT/debug/pprof/heap > "$OUT/$1.heap"
  curl -sf http://127.0.0.1:$PORT/metrics > "$OUT/$1.metrics"
}
END=$(( $(date +%s) / 60 * 60 ))
"$PB" ingest --url http://127.0.0.1:$PORT/api/v1/write --series "$SERIES" --duration "$DUR" --end $END \
  --pid $PID --out "$OUT/ingest.json" > "$OUT/ingest.log" 2>&1
snap after-ingest
curl -sf -XPOST http://127.0.0.1:$PORT/api/v1/admin/flush > /dev/null
sleep 2
snap after-flush
"$PB" query --url http://127.0.0.1:$PORT --queries "$QUERIES" --repeat "${REPEAT:-2}" \
  --ingest-report "$OUT/ingest.json" --pid $PID > "$OUT/query.log" 2>&1
snap after-query
du -sb "$D" > "$OUT/du"
kill $PID; wait $PID
rm -rf "$D"
