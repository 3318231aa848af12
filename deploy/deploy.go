// Package deploy embeds the deployment examples (Argo Rollouts, Flagger,
// Grafana), so that the demo (pkg/demo) runs the very queries and judge
// requests they hold, and tests check every query they contain against
// levitated's engine.
package deploy

import "embed"

// Examples holds argo-rollouts/*.yaml, flagger/*.yaml and
// grafana/dashboards/*.json, at those paths.
//
//go:embed argo-rollouts/*.yaml flagger/*.yaml grafana/dashboards/*.json
var Examples embed.FS
