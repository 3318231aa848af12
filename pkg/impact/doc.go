// Package impact is levitated's change intelligence: every change event of
// a configured name (deploy, canary-step, rollout, config-change) is judged
// automatically once it ends, without anyone writing a query, and the
// judgement is recorded as data.
//
// A [Scheduler] finds changes to judge in the event store: a window judged
// Delay after its stop, a point event PointWindow+Delay after it happened.
// A [Judge] builds, from the configured RED signals (PromQL templates over
// the change's attributes, [Config]), one request to levitated's native
// analysis service per comparison — the change against the same length of
// time before it, and the canary against the baseline where the service is
// split — so the verdict comes from the one canary judge (pkg/analysis,
// Kayenta's Mann-Whitney, through pkg/canaryapi) and not from a second one.
// Signals without enough data are left out; with none left the verdict is
// "inconclusive", never "pass".
//
// A judgement is recorded first as a change_impact point event whose
// idempotency key is the change's id: the event is the commit record, so a
// restart between a stop and its judgement judges it exactly once, and the
// scheduler needs no state of its own. Then, from the event alone, the
// series change_impact_score and change_impact_signal_ratio and the DORA
// series (change_deployments_total, change_failures_total,
// change_lead_time_seconds_*, change_restore_seconds_*), all at the event's
// time; the DORA series are recomputed from the stored change_impact events
// up to that time. Writing them again writes the same samples, so after a
// crash, and after a failed write, they are written again.
//
// With a grace (Config.Grace), a change judged before the end of its grace
// is judged again then; if the figures changed (late data), that final
// judgement is recorded too (idempotency key change_impact:<id>/final) and
// supersedes the first in the impact API, the gate and the DORA series.
//
// [Gate] answers a CI pipeline's "may I proceed?" from the latest
// judgement of a service's change, or by judging it now. docs/impact.md
// describes the configuration, the definitions and the APIs.
package impact
