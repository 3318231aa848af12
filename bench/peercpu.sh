#!/usr/bin/env bash
# peercpu.sh — the server CPU each range query costs levitated and
# VictoriaMetrics (with nocache=1) in the state peer-bench queries them in:
# each server in turn is started on an empty data directory, sent the same
# SERIES x 2 h by peer-bench's ingest (same END, so byte-identical data), made
# durable the way peer-bench does it (levitated: POST /api/v1/admin/flush;
# VictoriaMetrics: force_flush, force_merge, wait for the merge, force_flush),
# then asked each range query of peer-bench's queries.txt NH times (the heavy
# ones) or NL times (the single-series ones) one after the other by
# bench/smallq (POST, gzip accepted, kept-alive connection). Prints per server
# and query p50 / p90 / mean ms and the server's CPU milliseconds per query
# (from /proc): CPU per query is the steadier figure on a shared machine, p50
# is what peer-bench reports. Servers alternate ROUNDS times; nothing else of
# ours runs meanwhile. Run it under the bench lock.
#
# usage: bench/peercpu.sh LEVITATED_BIN
#   env: ROUNDS [2], SERIES [100000], END [unix seconds, a minute boundary;
#        default 1796521560], NH [10], NL [300], PORT_LEV [29612],
#        PORT_VM [29616], HEAVY / LIGHT [comma-separated query names],
#        PEER_BENCH_DIR [as ../shared/peer-bench/env.sh: VictoriaMetrics from
#        its bin/, installed by ../shared/peer-bench/install-peers.sh]
set -eu
LEV=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PB=$ROOT/../shared/peer-bench
# shellcheck source=/dev/null
source "$PB/env.sh"
pb_build_harness "$PB"
VM=$PB_BIN/victoria-metrics
[[ -x "$VM" ]] || { echo "peercpu.sh: no $VM; run $PB/install-peers.sh" >&2; exit 2; }
END=${END:-1796521560} SERIES=${SERIES:-100000}
Q=$PB/queries.txt
HEAVY=${HEAVY:-rate_by_service,p99_by_service,topk_routes,error_ratio,regex_rate,count_by_name,cpu_by_job,node_cpu_busy_top5}
LIGHT=${LIGHT:-one_series_raw,one_series_rate}
UL=http://127.0.0.1:${PORT_LEV:-29612} UV=http://127.0.0.1:${PORT_VM:-29616}
W=$(mktemp -d /tmp/peercpu.XXXXXX)
trap 'rm -rf "$W"' EXIT
(cd "$ROOT" && go build -o "$W/smallq" ./bench/smallq)

wait_url() { for _ in $(seq 120); do curl -sf -o /dev/null "$1" && return 0; sleep 1; done; echo "peercpu.sh: $1 not ready" >&2; return 1; }
ingest() { "$PB_BIN/peerbench" ingest --url "$1/api/v1/write" --series "$SERIES" --duration 2h --end "$END" | grep 'wall=' | sed "s/^/$2 ingest: /"; }
queries() { # LABEL URL PID
  "$W/smallq" -url "$2" -queries "$Q" -only "$HEAVY" -end "$END" -n "${NH:-10}" -pid "$3" -param nocache=1 -label "$1" | grep -v '^#'
  "$W/smallq" -url "$2" -queries "$Q" -only "$LIGHT" -end "$END" -n "${NL:-300}" -pid "$3" -param nocache=1 -label "$1" | grep -v '^#'
}
for r in $(seq "${ROUNDS:-2}"); do
  rm -rf "$W/data"; mkdir "$W/data"
  "$VM" -storageDataPath="$W/data" -httpListenAddr="${UV#http://}" > "$W/vm.log" 2>&1 &
  pid=$!
  wait_url "$UV/health"
  ingest "$UV" "round $r vm "
  curl -sf "$UV/internal/force_flush"; curl -sf "$UV/internal/force_merge"; sleep 2
  for _ in $(seq 600); do
    n=$(curl -sf "$UV/metrics" | awk '/^vm_active_force_merges /{print $2}')
    [[ "${n:-0}" == 0 ]] && break; sleep 1
  done
  curl -sf "$UV/internal/force_flush"
  queries "$(printf 'round %d %-4s' "$r" vm)" "$UV" $pid
  kill $pid; wait $pid 2>/dev/null || true

  rm -rf "$W/data"; mkdir "$W/data"
  "$LEV" --listen-address "${UL#http://}" --data-dir "$W/data" > "$W/lev.log" 2>&1 &
  pid=$!
  wait_url "$UL/-/ready"
  ingest "$UL" "round $r lev"
  curl -sf -XPOST "$UL/api/v1/admin/flush" > /dev/null
  queries "$(printf 'round %d %-4s' "$r" lev)" "$UL" $pid
  kill $pid; wait $pid 2>/dev/null || true
done
