// Package kayenta serves Kayenta's REST API from levitated, so that
// Spinnaker and Argo Rollouts' Kayenta provider judge canaries against
// levitated without a Kayenta: canary configs (/canaryConfig), canary
// executions started by config id or ad hoc (POST /canary…), their status
// with Kayenta's body (GET /canary/{id}: complete, status,
// result.judgeResult…), an application's executions, the judged series
// (/metricSetPairList/{id}), /judges and /credentials.
//
// Metric queries follow Kayenta's Prometheus conventions
// (kayenta-prometheus: metricName with labelBindings and
// customFilterTemplate, or customInlineTemplate "PromQL:…", ${scope} and
// ${location} templating, a step per scope) and run on levitated's own
// PromQL engine (pkg/rangequery). An execution is analysis.Analyze, the one
// judge pipeline, over this package's analysis.Source, with Kayenta's
// options, flaws included (docs/analysis.md).
//
// Executions run asynchronously on a pool of workers (Service.Run). Each
// is stored in Pebble before POST answers, with an entry in a queue that is
// removed, in the same synced batch as the result, when it finishes; an
// execution interrupted by a shutdown or a crash is re-queued at the next
// start. FORMAT.md describes the keys.
//
// Errors are Kayenta's: 400 or 404 with {"message": …}, here with the
// field the message is about ({"message": "thresholds.pass: …",
// "field": "thresholds.pass"}). Where Kayenta would accept a request and
// fail the execution later (an unparsable query, an unknown template
// variable, a missing step), levitated refuses it at once.
package kayenta
