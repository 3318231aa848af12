#!/usr/bin/env bash
# Builds (once) the peers of the Kubernetes end-to-end environment and prints
# where they are, one NAME=PATH line each:
#
#   ETCD=                 Debian's etcd-server (apt-get, as root)
#   KUBE_APISERVER=       kube-apiserver v1.35.0, from the wrapper module in
#                         ./apiserver (Kubernetes' staging modules replaced by
#                         their published v0.35.0 versions)
#   ROLLOUTS_CONTROLLER=  the Argo Rollouts v1.10.1 controller, built in a
#                         writable copy of its module directory with its own
#                         go.mod and replaces
#
# The binaries are cached in $LEVITATED_PEERS (default
# ~/.cache/levitated-peers), so a second run, or CI on another clone on the
# same machine, builds nothing. A cold build takes about 6.5 minutes on two
# cores (both Go builds at once, niced). Logs go to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${LEVITATED_PEERS:-$HOME/.cache/levitated-peers}
k8s=v1.35.0
argo=v1.10.1
apiserver=$cache/kube-apiserver-$k8s/kube-apiserver
controller=$cache/argo-rollouts-$argo/rollouts-controller
mkdir -p "$cache"
log() { echo "build-peers: $*" >&2; }

# The builds take the module graph from their own go.mod; the caller's
# GOFLAGS (CI sets -mod=readonly) would be right too, but -buildvcs is not.
export GOFLAGS=-mod=readonly

build_apiserver() {
  log "building kube-apiserver $k8s (wrapper module $here/apiserver)"
  mkdir -p "$(dirname "$apiserver")"
  (cd "$here/apiserver" && nice go build -o "$apiserver.tmp" -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$k8s \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=35" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$apiserver.tmp" "$apiserver"
}

build_controller() {
  log "building rollouts-controller $argo"
  local dir src
  dir=$(go mod download -json "github.com/argoproj/argo-rollouts@$argo" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$dir" ] || { log "go mod download github.com/argoproj/argo-rollouts@$argo gave no directory"; return 1; }
  src=$cache/src/argo-rollouts-$argo
  rm -rf "$src" && mkdir -p "$src"
  cp -r "$dir/." "$src" && chmod -R u+w "$src"
  mkdir -p "$(dirname "$controller")"
  (cd "$src" && nice go build -o "$controller.tmp" -ldflags "-s -w" ./cmd/rollouts-controller)
  mv "$controller.tmp" "$controller"
  rm -rf "$src"
}

pids=()
[ -x "$apiserver" ] || { build_apiserver & pids+=($!); }
[ -x "$controller" ] || { build_controller & pids+=($!); }
# etcd, the apiserver's store, from Debian, while the Go builds run.
etcd_failed=0
etcd=$(command -v etcd || true)
if [ -z "$etcd" ] && { [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; }; then
  log "etcd is not installed and this is not a root Debian shell: apt-get install etcd-server"
  etcd_failed=1
elif [ -z "$etcd" ]; then
  log "installing etcd-server (apt-get)"
  for attempt in 1 2 3 4 5 6; do
    # Another apt-get holding the lock is waited for, not taken as a failure.
    if apt-get install -y -qq -o DPkg::Lock::Timeout=300 etcd-server >&2 ||
      { apt-get update -qq -o DPkg::Lock::Timeout=300 >&2 && apt-get install -y -qq -o DPkg::Lock::Timeout=300 etcd-server >&2; }; then
      break
    fi
    log "apt-get failed (attempt $attempt), retrying"
    sleep 10
  done
  etcd=$(command -v etcd) || { log "etcd-server did not install"; etcd_failed=1; }
fi

failed=$etcd_failed
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" = 0 ] || { log "a build failed"; exit 1; }

echo "ETCD=$etcd"
echo "KUBE_APISERVER=$apiserver"
echo "ROLLOUTS_CONTROLLER=$controller"
# CRDs for the environment to install: Argo Rollouts', and those the Helm
# chart and deploy/flagger use (ServiceMonitor, Flagger's), from the same
# projects' Go modules.
moddir() { go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }
echo "ROLLOUTS_CRDS=$(moddir "github.com/argoproj/argo-rollouts@$argo")/manifests/crds"
echo "FLAGGER_CRD=$(moddir github.com/fluxcd/flagger@v1.36.1)/artifacts/flagger/crd.yaml"
echo "SERVICEMONITOR_CRD=$(moddir github.com/prometheus-operator/prometheus-operator@v0.88.0)/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
