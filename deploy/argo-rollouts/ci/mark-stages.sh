#!/usr/bin/env bash
# Marks an Argo Rollouts canary in levitated while it runs: a "deploy" window
# for the whole rollout and a "canary-step" window per stage (from the
# setWeight step that starts it until the next one, or the end), so that the
# stage's analysis (canary-stage-gate.yaml, analysis-web.yaml) and the
# Grafana dashboard see when each stage began. Exits 0 when the rollout is
# promoted (Healthy), 1 when it is aborted or degraded.
#
#   LEVITATED_SERVER=http://levitated.monitoring.svc:9090 \
#   ROLLOUT=checkout NAMESPACE=shop SERVICE=checkout REVISION=1.5.0 \
#     ./mark-stages.sh
#
# Needs kubectl (with access to the Rollout), jq and eventctl
# (go install github.com/levitated/levitated/cmd/eventctl@latest). Every
# event carries an idempotency key derived from RUN_ID, so rerunning the
# script after a failure stores nothing twice.
set -euo pipefail

: "${LEVITATED_SERVER:?set LEVITATED_SERVER to the URL of levitated}"
export LEVITATED_SERVER
ROLLOUT=${ROLLOUT:?set ROLLOUT to the name of the Rollout}
NAMESPACE=${NAMESPACE:-default}
SERVICE=${SERVICE:-$ROLLOUT}
REVISION=${REVISION:-unknown}
RUN_ID=${RUN_ID:-${GITHUB_RUN_ID:-$(date +%s)}}
POLL=${POLL:-5}
TIMEOUT=${TIMEOUT:-3600}
KUBECTL=${KUBECTL:-kubectl}
EVENTCTL=${EVENTCTL:-eventctl}

key="$RUN_ID-$NAMESPACE-$ROLLOUT"
deploy_attrs=(--attr "service=$SERVICE" --attr "revision=$REVISION")
$EVENTCTL start deploy "${deploy_attrs[@]}" --key "$key-deploy" \
  --text "rollout $NAMESPACE/$ROLLOUT to $REVISION" >/dev/null

stage=""        # weight of the open canary-step window
stop_stage() {  # $1: outcome of the stage
  if [ -n "$stage" ]; then
    $EVENTCTL stop canary-step --start-key "$key-step-$stage" \
      --attr "service=$SERVICE" --attr "weight=$stage" --attr "outcome=$1" \
      --key "$key-step-$stage-stop" >/dev/null
    stage=""
  fi
}
finish() {      # $1: result of the rollout, $2: exit status
  stop_stage "$1"
  $EVENTCTL stop deploy --start-key "$key-deploy" "${deploy_attrs[@]}" \
    --attr "result=$1" --key "$key-deploy-stop" >/dev/null
  echo "rollout $NAMESPACE/$ROLLOUT: $1"
  exit "$2"
}

deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  json=$($KUBECTL -n "$NAMESPACE" get rollout "$ROLLOUT" -o json)
  phase=$(jq -r '.status.phase // ""' <<<"$json")
  aborted=$(jq -r '.status.abort // false' <<<"$json")
  # The weight of the latest setWeight step at or before the current step.
  weight=$(jq -r '(.status.currentStepIndex // 0) as $i
    | [.spec.strategy.canary.steps[:($i + 1)][] | .setWeight // empty] | last // ""' <<<"$json")

  if [ "$aborted" = true ] || [ "$phase" = Degraded ]; then
    finish rolled-back 1
  fi
  if [ "$phase" = Healthy ] && [ "$(jq -r '.status.currentStepIndex // 0' <<<"$json")" = "$(jq -r '.spec.strategy.canary.steps | length' <<<"$json")" ]; then
    finish promoted 0
  fi
  if [ -n "$weight" ] && [ "$weight" != "$stage" ]; then
    stop_stage passed
    $EVENTCTL start canary-step --attr "service=$SERVICE" --attr "weight=$weight" \
      --key "$key-step-$weight" --text "$ROLLOUT at $weight %" >/dev/null
    stage=$weight
    echo "stage $weight % started"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    finish timed-out 1
  fi
  sleep "$POLL"
done
