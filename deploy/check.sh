#!/usr/bin/env bash
# Lints and renders the Helm chart with the default values and with
# deploy/helm/levitated/ci/production-values.yaml, and checks that the plain
# manifests in deploy/kubernetes/ are what the chart renders (run with
# --write to regenerate them). Needs helm on PATH; .ci/run installs it.
# The rendered objects are decoded strictly into Kubernetes' API types by
# compat/kubernetes_test.go.
set -euo pipefail
cd "$(dirname "$0")"

chart=helm/levitated
values=$chart/ci/production-values.yaml

helm lint --strict "$chart"
helm lint --strict "$chart" -f "$values"
helm template levitated "$chart" --namespace monitoring >/dev/null
helm template levitated "$chart" --namespace monitoring -f "$values" >/dev/null
# The HA pair behind a Thanos Querier (deploy/thanos): each replica's values.
for r in a b; do
  helm lint --strict "$chart" -f thanos/values-replica-$r.yaml
  helm template levitated-$r "$chart" --namespace monitoring -f thanos/values-replica-$r.yaml |
    grep -q -- "--external-label=replica=$r" || { echo "deploy/thanos/values-replica-$r.yaml: no --external-label=replica=$r rendered" >&2; exit 1; }
done

render() {
  {
    echo "# Rendered from deploy/helm/levitated with the default values by deploy/check.sh --write:"
    echo "#   helm template levitated deploy/helm/levitated --namespace monitoring --skip-tests"
    echo "# Apply with: kubectl create namespace monitoring && kubectl apply -n monitoring -f deploy/kubernetes/levitated.yaml"
    helm template levitated "$chart" --namespace monitoring --skip-tests
  }
}

if [ "${1:-}" = --write ]; then
  render >kubernetes/levitated.yaml
  echo "wrote deploy/kubernetes/levitated.yaml"
elif ! diff -u kubernetes/levitated.yaml <(render); then
  echo "deploy/kubernetes/levitated.yaml is not what the chart renders: run deploy/check.sh --write" >&2
  exit 1
fi
echo "deploy: helm lint and helm template pass (default and production values); deploy/kubernetes is up to date"
