#!/usr/bin/env bash
# panel-bench.sh — a Grafana panel's refreshes on levitated (with its results
# cache, and with --query.results-cache-bytes=0) and on VictoriaMetrics (its
# rollup cache, and nocache=1), on the same data, one server after another.
#
# usage (from the repository root): bench/panel-bench.sh [--series N] [--duration D] [--runs R]
#
# Each server starts on an empty data dir inside peer-bench's work dir, gets
# peer-bench's generated data (peerbench ingest, the same --end for all), is
# flushed, and then bench/panelbench times each range query of peer-bench's
# queries.txt: the first run over [end-2h, end] at 60 s steps, the same range
# again (a dashboard reloaded), and runs shifted by one step each (the panel
# refreshed as time moves on). The servers are stopped by PID. Needs
# ../shared/peer-bench/install-peers.sh victoriametrics to have run; uses the
# fixed ports 28428 (VictoriaMetrics) and 29201 (levitated).
set -euo pipefail
PB="$(cd "$(dirname "$0")/../../shared/peer-bench" 2>/dev/null && pwd || true)"
[[ -n "$PB" && -f "$PB/env.sh" ]] || PB="$(cd ../shared/peer-bench && pwd)"
source "$PB/env.sh"
SERIES=10000 DURATION=2h RUNS=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --series) SERIES="$2"; shift 2;;
    --duration) DURATION="$2"; shift 2;;
    --runs) RUNS="$2"; shift 2;;
    *) echo "panel-bench.sh: unknown option $1" >&2; exit 2;;
  esac
done
[[ -x "$PB_BIN/victoria-metrics" ]] || { echo "panel-bench.sh: run $PB/install-peers.sh victoriametrics first" >&2; exit 2; }
pb_build_harness "$PB"
exec 9>"$PEER_BENCH_DIR/.run.lock"
flock -n 9 || { echo "panel-bench.sh: another peer-bench run holds $PEER_BENCH_DIR/.run.lock" >&2; exit 2; }

END=$(( $(date +%s) / 60 * 60 ))
OUT="$PB_RUNS/panel-s$SERIES-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
go build -o "$OUT/levitated" ./cmd/levitated
go build -o "$OUT/panelbench" ./bench/panelbench
echo "levitated $(git rev-parse --short HEAD), series $SERIES, duration $DURATION, end $END, out $OUT" | tee "$OUT/report.md"

# serve NAME PORT FLUSH_CMD PARAMS -- CMD...: start, ingest, flush, time the panels, stop.
serve() {
  local name="$1" port="$2" flush="$3" params="$4"; shift 5
  local url="http://127.0.0.1:$port" data="$PB_DATA/panel-$name"
  if curl -s -o /dev/null --max-time 2 "$url/"; [[ $? -ne 7 ]]; then
    echo "panel-bench.sh: something listens on $url already" >&2; return 2
  fi
  rm -rf "$data"; mkdir -p "$data"
  local args=() a
  for a in "$@"; do args+=("${a//\{DATA_DIR\}/$data}"); done
  "${args[@]}" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/api/v1/labels")" == 200 ]] && break
    sleep 1
  done
  "$PB_BIN/peerbench" ingest --url "$url/api/v1/write" --series "$SERIES" --duration "$DURATION" --end "$END" \
    --pid "$pid" --out "$OUT/$name-ingest.json" >"$OUT/$name-ingest.txt"
  URL="$url" bash -c "$flush" >>"$OUT/$name.log" 2>&1
  echo >>"$OUT/report.md"
  local p
  for p in $params; do # LABEL:QUERY_PARAMS
    "$OUT/panelbench" --url "$url" --name "$name ${p%%:*}" --queries "$PB/queries.txt" --end "$END" --runs "$RUNS" \
      --params "${p#*:}" --json "$OUT/$name-${p%%:*}.json" | tee -a "$OUT/report.md"
    echo >>"$OUT/report.md"
  done
  if [[ "$name" == levitated* ]]; then
    curl -s "$url/metrics" | grep '^levitated_query_results_cache' | tee -a "$OUT/report.md" || true
  fi
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$data"
}

serve victoriametrics 28428 \
  'curl -sf "$URL/internal/force_flush"; curl -sf "$URL/internal/force_merge"; sleep 2;
   for i in $(seq 1 600); do n=$(curl -sf "$URL/metrics" | awk "/^vm_active_force_merges /{print \$2}"); [ "${n:-0}" = 0 ] && break; sleep 1; done;
   curl -sf "$URL/internal/force_flush"' \
  "cached: nocache=1:nocache=1" -- "$PB_BIN/victoria-metrics" -storageDataPath={DATA_DIR} -httpListenAddr=127.0.0.1:28428
serve levitated 29201 'curl -sf -XPOST "$URL/api/v1/admin/flush"' "cached:" -- \
  "$OUT/levitated" --listen-address 127.0.0.1:29201 --data-dir {DATA_DIR}
serve levitated-nocache 29201 'curl -sf -XPOST "$URL/api/v1/admin/flush"' "uncached:" -- \
  "$OUT/levitated" --listen-address 127.0.0.1:29201 --data-dir {DATA_DIR} --query.results-cache-bytes 0
echo "report: $OUT/report.md"
