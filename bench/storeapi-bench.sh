#!/usr/bin/env bash
# storeapi-bench.sh — Thanos StoreAPI Series over N series × D: levitated's
# own StoreAPI next to a real thanos sidecar (v0.42.5) in front of a real
# Prometheus 3.16, on the same data, in the same run.
#
# usage (from the repository root):
#   bench/storeapi-bench.sh [--series N] [--duration D] [--runs R] [--baseline REF]
# defaults: --series 100000 --duration 2h --runs 5
#
# --baseline REF also builds levitated at the git commit REF (git archive,
# nothing of the checkout changed) and serves a copy of the same data
# with it (port 29302), a third endpoint of the same run: before and
# after a change, next to the sidecar.
#
# Prometheus (compat/peers/prometheus.sh) and levitated each start on an
# empty data dir inside peer-bench's work dir with the external label
# cluster=bench, and get peer-bench's generated data by remote write
# (peerbench ingest, the same --end for both); levitated is flushed; a
# thanos sidecar (compat/peers/build-thanos.sh) starts in front of
# Prometheus. bench/storeapibench then calls Series {__name__=~".+"} over
# [end-D, end] on both, alternating, R timed calls each after a warm-up, and
# reports samples/s, bytes on the wire and the CPU of the server side
# (sidecar + Prometheus; levitated). Everything is stopped by PID. Uses the
# fixed loopback ports 29390-29392 (Prometheus, sidecar gRPC and HTTP) and
# 29301-29302 (levitated). Needs ../shared/peer-bench.
set -euo pipefail
PB="$(cd "$(dirname "$0")/../../shared/peer-bench" 2>/dev/null && pwd || true)"
[[ -n "$PB" && -f "$PB/env.sh" ]] || PB="$(cd ../shared/peer-bench && pwd)"
source "$PB/env.sh"
SERIES=100000 DURATION=2h RUNS=5 BASELINE=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --series) SERIES="$2"; shift 2;;
    --duration) DURATION="$2"; shift 2;;
    --runs) RUNS="$2"; shift 2;;
    --baseline) BASELINE="$2"; shift 2;;
    *) echo "storeapi-bench.sh: unknown option $1" >&2; exit 2;;
  esac
done
PROM="$(compat/peers/prometheus.sh)"
THANOS="$(compat/peers/build-thanos.sh)"
pb_build_harness "$PB"
exec 9>"$PEER_BENCH_DIR/.storeapi.lock"
flock -n 9 || { echo "storeapi-bench.sh: another run holds $PEER_BENCH_DIR/.storeapi.lock" >&2; exit 2; }

END=$(( $(date +%s) / 60 * 60 ))
case "$DURATION" in
  *h) SECS=$(( ${DURATION%h} * 3600 ));;
  *m) SECS=$(( ${DURATION%m} * 60 ));;
  *) echo "storeapi-bench.sh: --duration $DURATION: use Nh or Nm" >&2; exit 2;;
esac
OUT="$PB_RUNS/storeapi-s$SERIES-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
REV="$(git rev-parse --short HEAD)" # what is built, even if HEAD moves during the run
go build -o "$OUT/levitated" ./cmd/levitated
go build -o "$OUT/storeapibench" ./bench/storeapibench
if [[ -n "$BASELINE" ]]; then
  BASE_REV="$(git rev-parse --short "$BASELINE^{commit}")"
  mkdir -p "$OUT/baseline-src"
  git archive "$BASE_REV" | tar -x -C "$OUT/baseline-src"
  (cd "$OUT/baseline-src" && go build -o "$OUT/levitated-baseline" ./cmd/levitated)
  rm -rf "$OUT/baseline-src"
fi
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$PB_DATA/storeapi-prometheus" "$PB_DATA/storeapi-levitated" "$PB_DATA/storeapi-levitated-baseline"
}
trap cleanup EXIT
free() { if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; [[ $? -ne 7 ]]; then echo "storeapi-bench.sh: port $1 is in use" >&2; exit 2; fi; }
for p in 29390 29391 29392 29301 29302; do free "$p"; done
wait_http() { # URL
  for _ in $(seq 1 300); do [[ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" == 200 ]] && return 0; sleep 1; done
  echo "storeapi-bench.sh: $1 did not answer 200" >&2; exit 1
}
{
  echo "levitated $REV, series $SERIES, duration $DURATION, end $END, runs $RUNS${BASELINE:+, baseline levitated $BASE_REV}"
  echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
  echo "prometheus: $PROM"; echo "thanos: $THANOS"
} | tee "$OUT/report.md"

# Prometheus 3.16 with the external label, and a thanos sidecar in front.
pdata="$PB_DATA/storeapi-prometheus"; rm -rf "$pdata"; mkdir -p "$pdata"
printf 'global:\n  external_labels:\n    cluster: bench\n' >"$OUT/prometheus.yml"
"$PROM" --config.file="$OUT/prometheus.yml" --storage.tsdb.path="$pdata" --web.listen-address=127.0.0.1:29390 \
  --web.enable-remote-write-receiver --storage.tsdb.retention.time=30d >"$OUT/prometheus.log" 2>&1 &
ppid=$!; PIDS+=("$ppid")
wait_http http://127.0.0.1:29390/-/ready
"$PB_BIN/peerbench" ingest --url http://127.0.0.1:29390/api/v1/write --series "$SERIES" --duration "$DURATION" --end "$END" \
  --pid "$ppid" --out "$OUT/prometheus-ingest.json" >"$OUT/prometheus-ingest.txt"
"$THANOS" sidecar --prometheus.url=http://127.0.0.1:29390 --tsdb.path="$pdata" \
  --grpc-address=127.0.0.1:29391 --http-address=127.0.0.1:29392 >"$OUT/sidecar.log" 2>&1 &
spid=$!; PIDS+=("$spid")
wait_http http://127.0.0.1:29392/-/ready

# levitated with the same external label.
ldata="$PB_DATA/storeapi-levitated"; rm -rf "$ldata"; mkdir -p "$ldata"
"$OUT/levitated" --listen-address 127.0.0.1:29301 --data-dir "$ldata" --external-label=cluster=bench \
  --query.timeout=10m >"$OUT/levitated.log" 2>&1 &
lpid=$!; PIDS+=("$lpid")
wait_http http://127.0.0.1:29301/-/ready
"$PB_BIN/peerbench" ingest --url http://127.0.0.1:29301/api/v1/write --series "$SERIES" --duration "$DURATION" --end "$END" \
  --pid "$lpid" --out "$OUT/levitated-ingest.json" >"$OUT/levitated-ingest.txt"
curl -sf -XPOST http://127.0.0.1:29301/api/v1/admin/flush >/dev/null
BASE_EP=()
if [[ -n "$BASELINE" ]]; then
  # The same data for the baseline: levitated stopped cleanly, its data
  # dir copied, both started again.
  kill -TERM "$lpid"; wait "$lpid" || true
  bdata="$PB_DATA/storeapi-levitated-baseline"; rm -rf "$bdata"; cp -a "$ldata" "$bdata"
  "$OUT/levitated" --listen-address 127.0.0.1:29301 --data-dir "$ldata" --external-label=cluster=bench \
    --query.timeout=10m >>"$OUT/levitated.log" 2>&1 &
  lpid=$!; PIDS+=("$lpid")
  "$OUT/levitated-baseline" --listen-address 127.0.0.1:29302 --data-dir "$bdata" --external-label=cluster=bench \
    --query.timeout=10m >"$OUT/levitated-baseline.log" 2>&1 &
  bpid=$!; PIDS+=("$bpid")
  wait_http http://127.0.0.1:29301/-/ready
  wait_http http://127.0.0.1:29302/-/ready
  BASE_EP=(--endpoint "levitated $BASE_REV (baseline)=127.0.0.1:29302=$bpid")
fi

echo | tee -a "$OUT/report.md"
"$OUT/storeapibench" --start $(( (END - SECS) * 1000 )) --end $(( END * 1000 )) --runs "$RUNS" \
  --endpoint "levitated $REV=127.0.0.1:29301=$lpid" "${BASE_EP[@]}" \
  --endpoint "thanos sidecar + Prometheus 3.16=127.0.0.1:29391=$spid,$ppid" | tee -a "$OUT/report.md"
[[ -z "$BASELINE" ]] || echo "peak RSS (VmHWM) of the baseline levitated: $(awk '/VmHWM/{print $2, $3}' /proc/$bpid/status)" | tee -a "$OUT/report.md"
echo "peak RSS (VmHWM): levitated $(awk '/VmHWM/{print $2, $3}' /proc/$lpid/status), sidecar $(awk '/VmHWM/{print $2, $3}' /proc/$spid/status), prometheus $(awk '/VmHWM/{print $2, $3}' /proc/$ppid/status)" | tee -a "$OUT/report.md"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/report.md"
echo "report: $OUT/report.md"
