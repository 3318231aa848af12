//go:build tools

// Package apiserver pins kube-apiserver v1.35.0 for compat/kube/build-peers.sh:
// its staging modules are replaced by their published v0.35.0 versions.
package apiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
