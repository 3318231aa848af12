#!/usr/bin/env bash
# memrun.sh — where levitated's memory goes at a peer-bench scale: starts one
# levitated, sends ../shared/peer-bench's data with its `peerbench ingest`
# (--pid samples the server's RSS), flushes, runs the query set, and after each
# phase saves /proc status (VmHWM = peak RSS so far), a heap profile
# (/debug/pprof/heap) and /metrics (Go heap, Pebble memtables and block cache).
#
# usage: bench/memrun.sh BIN OUTDIR SERIES DURATION [levitated flags...]
#   env: PORT [29377], REPEAT (timed runs per query) [2], PEERBENCH [/tmp/peerbench],
#        TIMELINE (seconds between rows of OUT/timeline.tsv: RSS, Go heap, Pebble
#        memory through the run; 0 off) [2]
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
TL=${TIMELINE:-2}
if [ "$TL" != 0 ]; then
  (
    echo -e "t\trss_mib\theap_alloc_mib\theap_inuse_mib\theap_idle_mib\theap_released_mib\tnext_gc_mib\tstack_mib\tmemtable_mib\tblock_cache_mib\tgc_count"
    T0=$(date +%s)
    while kill -0 $PID 2>/dev/null; do
      RSS=$(awk '/VmRSS/{print int($2/1024)}' /proc/$PID/status 2>/dev/null)
      curl -sf -m 5 http://127.0.0.1:$PORT/metrics 2>/dev/null | awk -v t=$(( $(date +%s) - T0 )) -v rss="$RSS" '
        function mib(x) { return int(x/1048576) }
        $1=="go_memstats_heap_alloc_bytes"{a=mib($2)} $1=="go_memstats_heap_inuse_bytes"{i=mib($2)}
        $1=="go_memstats_heap_idle_bytes"{d=mib($2)} $1=="go_memstats_heap_released_bytes"{r=mib($2)}
        $1=="go_memstats_next_gc_bytes"{n=mib($2)} $1=="go_memstats_stack_inuse_bytes"{s=mib($2)}
        $1=="levitated_pebble_memtable_bytes"{m=mib($2)} $1=="levitated_pebble_block_cache_bytes"{b=mib($2)}
        $1=="go_gc_duration_seconds_count"{g=$2}
        END { if (rss != "") print t"\t"rss"\t"a"\t"i"\t"d"\t"r"\t"n"\t"s"\t"m"\t"b"\t"g }'
      sleep "$TL"
    done
  ) > "$OUT/timeline.tsv" &
fi
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
