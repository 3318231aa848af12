// Package kubeevents turns changes in a Kubernetes cluster into levitated
// change events, with no CI step: it lists and watches the API server and
// sends, through a [Sink],
//
//   - "deploy" start and stop events for Deployment, StatefulSet,
//     DaemonSet and Argo Rollouts Rollout rollouts: a start when the pod
//     template changes (the object's generation at that change is the
//     "revision" attribute, with "image", "namespace", "kind", "workload"
//     and "service"), the matching stop when the rollout settles (the
//     controller has observed it and every replica is updated and
//     available), is aborted (a Rollout), is superseded by a newer
//     template, or the object is deleted ("outcome");
//   - "canary-step" start and stop events for each canary stage of a
//     Rollout (the "weight" of its setWeight step: 20, 40, 60 %…), with the
//     canary's pod-template hash as "revision", so that the
//     AnalysisTemplates of deploy/argo-rollouts find their windows;
//   - one "scale" point event when a HorizontalPodAutoscaler's desired
//     replicas change ("from", "to");
//   - one "config-change" point event when a ConfigMap or a Secret is
//     created, changed or deleted, read through the metadata-only API, so
//     the watcher never receives their contents.
//
// Every event carries an idempotency key made from the object's UID and
// what changed, and the watcher keeps, per object, the resourceVersion it
// last handled and what it derived from it in a ConfigMap (see [State]).
// After a restart, or when another replica takes over, it lists again,
// compares each object with what it kept and sends only what changed
// meanwhile; an event sent just before a crash and sent again is
// recognised by levitated by its key and stored once.
//
// On its first run (no state yet) the watcher records what it finds
// without sending events: a cluster's existing objects are not changes.
package kubeevents
