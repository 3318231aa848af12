// Package kube runs levitated beside a real Kubernetes API server (v1.35.0,
// on Debian's etcd) and the real Argo Rollouts controller (v1.10.1), with no
// kubelet: the controller evaluates AnalysisRuns and steps Rollouts itself,
// so the AnalysisTemplates shipped in deploy/argo-rollouts are judged by
// Argo's own argument substitution, schedule (interval, count, limits) and
// providers, against levitated.
//
// The environment (env_test.go) is built by build-peers.sh (binaries cached
// in ~/.cache/levitated-peers) and started once per test binary inside a
// network and mount namespace of its own (unshare -n -m, as root): only a
// loopback interface exists there, so the controller's metrics and healthz
// ports, which it binds on every interface, reach nothing else, fixed ports
// collide with no other process, and an /etc/hosts bound over the machine's
// one makes the templates' address, levitated.monitoring.svc, resolve to
// the levitated started there on 127.0.0.1:9090. Every process is stopped by
// its PID at the end (the controller, then the API server, then etcd).
package kube
