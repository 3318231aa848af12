#!/usr/bin/env bash
# querycores.sh — how fast, and on how many cores, builds answer range
# queries back to back over the same stored data: each build in turn is
# started on a copy of a data directory (written by peer-bench's ingest and
# flushed, e.g. by bench/memquery.sh), runs each query N times one after the
# other (2 h ending at END, step 60 s, nocache=1) and is stopped; prints per
# build and query the milliseconds per query, the server's CPU milliseconds
# per query (from /proc) and the cores it used (CPU ÷ wall). Builds
# alternate ROUNDS times. Run it under the bench lock.
#
# usage: bench/querycores.sh DATADIR END NAME=BIN [NAME=BIN...]
#   END: the data's last timestamp (unix seconds)
#   env: PORT [29611], N [8], ROUNDS [2], QUERIES: NAME|range|QUERY lines
#        [rate_by_service, count_by_name, error_ratio of peer-bench],
#        GZ=1: ask for gzip (Accept-Encoding: gzip), as peer-bench's Go
#        client does; the answer is not decompressed
set -u
DATA=$1 END=$2; shift 2
PORT=${PORT:-29611}
U=http://127.0.0.1:$PORT
START=$((END - 7200))
TCK=$(getconf CLK_TCK)
QUERIES=${QUERIES:-'rate_by_service|range|sum by (service) (rate(http_requests_total[5m]))
count_by_name|range|count by (__name__) ({__name__=~".+"})
error_ratio|range|sum by (service) (rate(http_requests_total{status=~"5.."}[5m])) / sum by (service) (rate(http_requests_total[5m]))'}
D=$(mktemp -d /tmp/querycores-data.XXXXXX)
trap 'rm -rf "$D" "$D".*.log' EXIT
cp -a "$DATA/." "$D/"
run() {
  curl -s -o /dev/null ${GZ:+-H "Accept-Encoding: gzip"} "$U/api/v1/query_range" --data-urlencode "query=$1" -d start=$START -d end=$END -d step=60 -d nocache=1
}
for r in $(seq "${ROUNDS:-2}"); do
  for nb in "$@"; do
    name=${nb%%=*} bin=${nb#*=}
    "$bin" --listen-address 127.0.0.1:$PORT --data-dir "$D" > "$D.$name.log" 2>&1 &
    pid=$!
    for i in $(seq 120); do curl -sf -o /dev/null $U/-/ready && break; sleep 1; done
    while IFS='|' read -r qn _ q; do
      run "$q"
      c0=$(awk '{print $14+$15}' /proc/$pid/stat); t0=$(date +%s%N)
      for i in $(seq "${N:-8}"); do run "$q"; done
      t1=$(date +%s%N); c1=$(awk '{print $14+$15}' /proc/$pid/stat)
      awk -v n="${N:-8}" -v w=$(( (t1 - t0) / 1000000 )) -v c=$(( (c1 - c0) * 1000 / TCK )) -v b="$name" -v q="$qn" -v r="$r" \
        'BEGIN { printf "round %d %-8s %-16s %7.1f ms/query %7.1f cpu-ms/query %5.2f cores\n", r, b, q, w / n, c / n, c / w }'
    done <<< "$QUERIES"
    kill $pid; wait $pid 2>/dev/null
  done
done
