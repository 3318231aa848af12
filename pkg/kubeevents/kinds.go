package kubeevents

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/levitated/levitated/pkg/events"
)

// Kind is one kind of object the watcher follows.
type Kind struct {
	// Name is the kind's name, as in --kinds: "Deployment".
	Name string
	// Resource is the resource listed and watched.
	Resource schema.GroupVersionResource
	// metadataOnly: read through the metadata-only API (no contents).
	metadataOnly bool
	// diff derives the events of a change and the object's next state.
	diff differ
}

// differ compares an object with the state kept for it (nil if none: a
// new object) and returns its next state and the events of the change.
type differ func(prev *ObjectState, obj *unstructured.Unstructured) (ObjectState, []events.Event)

// Kinds are every kind the watcher can follow, by name.
var Kinds = map[string]Kind{
	"Deployment":              {Name: "Deployment", Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, diff: workloadDiffer("Deployment", templateHash, deploymentSettled)},
	"StatefulSet":             {Name: "StatefulSet", Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, diff: workloadDiffer("StatefulSet", templateHash, statefulSetSettled)},
	"DaemonSet":               {Name: "DaemonSet", Resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, diff: workloadDiffer("DaemonSet", templateHash, daemonSetSettled)},
	"Rollout":                 {Name: "Rollout", Resource: schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}, diff: rolloutDiff},
	"HorizontalPodAutoscaler": {Name: "HorizontalPodAutoscaler", Resource: schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}, diff: hpaDiff},
	"ConfigMap":               {Name: "ConfigMap", Resource: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, metadataOnly: true, diff: configDiffer("ConfigMap")},
	"Secret":                  {Name: "Secret", Resource: schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, metadataOnly: true, diff: configDiffer("Secret")},
}

// ObjectState is what the watcher keeps about one object between changes
// (and across restarts, in the state ConfigMap).
type ObjectState struct {
	UID string `json:"uid"`
	// ResourceVersion is the object's version the state was derived from.
	ResourceVersion string `json:"rv"`
	// Workloads: the pod template's hash, the generation at which it
	// changed, and whether its "deploy" window is open.
	TemplateHash string `json:"template,omitempty"`
	Revision     int64  `json:"revision,omitempty"`
	Open         bool   `json:"open,omitempty"`
	// The attributes of the open deploy window (its stop repeats them).
	Attrs map[string]string `json:"attrs,omitempty"`
	// Rollouts: the open canary stage ("podHash/weight") and its
	// attributes.
	Stage      string            `json:"stage,omitempty"`
	StageAttrs map[string]string `json:"stage_attrs,omitempty"`
	// HorizontalPodAutoscalers: the desired replicas.
	Replicas int64 `json:"replicas,omitempty"`
}

// Event names.
const (
	EventDeploy       = "deploy"
	EventCanaryStep   = "canary-step"
	EventScale        = "scale"
	EventConfigChange = "config-change"
)

// changeTime is when the object last changed: the latest time of its
// managed fields (the API server stamps each write), else now. Resending an
// event derived from the same object version gives the same time.
func changeTime(obj *unstructured.Unstructured) time.Time {
	var latest time.Time
	for _, mf := range obj.GetManagedFields() {
		if mf.Time != nil && mf.Time.After(latest) {
			latest = mf.Time.Time
		}
	}
	if latest.IsZero() {
		return time.Now()
	}
	return latest.UTC()
}

// serviceOf names the service of an object as the analysis templates
// select it: the app.kubernetes.io/name or app label, else its name.
func serviceOf(obj *unstructured.Unstructured) string {
	l := obj.GetLabels()
	if v := l["app.kubernetes.io/name"]; v != "" {
		return v
	}
	if v := l["app"]; v != "" {
		return v
	}
	return obj.GetName()
}

// key is an idempotency key: the object's UID and what changed.
func key(obj *unstructured.Unstructured, parts ...string) string {
	return "kube:" + string(obj.GetUID()) + ":" + strings.Join(parts, ":")
}

func newEvent(name string, state events.State, t time.Time, attrs map[string]string, idem string) events.Event {
	a := make(map[string]string, len(attrs))
	for k, v := range attrs {
		if v != "" {
			a[k] = v
		}
	}
	return events.Event{Name: name, State: state, Time: t, Attributes: a, Source: Source, IdempotencyKey: idem}
}

// stopOf returns the stop closing a start sent with startKey and attrs.
func stopOf(name string, t time.Time, attrs map[string]string, startKey, outcome string) events.Event {
	a := make(map[string]string, len(attrs)+1)
	for k, v := range attrs {
		a[k] = v
	}
	a["outcome"] = outcome
	e := newEvent(name, events.StateStop, t, a, startKey+":stop")
	e.StartKey = startKey
	return e
}

// Source is the source of every event the watcher sends.
const Source = "kube-events"

// templateHash hashes a pod template (the JSON encoding of a map has
// sorted keys, so equal templates hash equally).
func templateHash(obj *unstructured.Unstructured) string {
	tmpl, _, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "template")
	b, _ := json.Marshal(tmpl)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// images lists the containers' images of the pod template.
func images(obj *unstructured.Unstructured) string {
	cs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	var out []string
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok {
			if s, ok := m["image"].(string); ok {
				out = append(out, s)
			}
		}
	}
	v := strings.Join(out, ",")
	if len(v) > 4096 {
		v = v[:4096]
	}
	return v
}

func nestedInt(obj *unstructured.Unstructured, fields ...string) int64 {
	v, _, _ := unstructured.NestedFieldNoCopy(obj.Object, fields...)
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
}

func nestedString(obj *unstructured.Unstructured, fields ...string) string {
	s, _, _ := unstructured.NestedString(obj.Object, fields...)
	return s
}

// specReplicas is spec.replicas, 1 when unset.
func specReplicas(obj *unstructured.Unstructured) int64 {
	if _, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", "replicas"); !ok {
		return 1
	}
	return nestedInt(obj, "spec", "replicas")
}

// settledFunc reports whether the rollout of the template at revision has
// finished, and how ("settled", "aborted").
type settledFunc func(obj *unstructured.Unstructured, revision int64) (bool, string)

func deploymentSettled(obj *unstructured.Unstructured, revision int64) (bool, string) {
	n := specReplicas(obj)
	return nestedInt(obj, "status", "observedGeneration") >= revision &&
		nestedInt(obj, "status", "updatedReplicas") == n &&
		nestedInt(obj, "status", "replicas") == n &&
		nestedInt(obj, "status", "availableReplicas") == n, "settled"
}

func statefulSetSettled(obj *unstructured.Unstructured, revision int64) (bool, string) {
	n := specReplicas(obj)
	cur, upd := nestedString(obj, "status", "currentRevision"), nestedString(obj, "status", "updateRevision")
	return nestedInt(obj, "status", "observedGeneration") >= revision &&
		nestedInt(obj, "status", "updatedReplicas") == n &&
		nestedInt(obj, "status", "readyReplicas") == n &&
		(cur == upd || cur == ""), "settled"
}

func daemonSetSettled(obj *unstructured.Unstructured, revision int64) (bool, string) {
	n := nestedInt(obj, "status", "desiredNumberScheduled")
	return nestedInt(obj, "status", "observedGeneration") >= revision &&
		nestedInt(obj, "status", "updatedNumberScheduled") == n &&
		nestedInt(obj, "status", "numberAvailable") == n, "settled"
}

func rolloutSettled(obj *unstructured.Unstructured, _ int64) (bool, string) {
	if aborted, _, _ := unstructured.NestedBool(obj.Object, "status", "abort"); aborted {
		return true, "aborted"
	}
	cur := nestedString(obj, "status", "currentPodHash")
	return cur != "" && nestedString(obj, "status", "stableRS") == cur && nestedString(obj, "status", "phase") == "Healthy", "settled"
}

// workloadDiffer derives "deploy" windows: a start when the pod template
// changes (or the object is new), a stop when the rollout settles.
func workloadDiffer(kind string, hashOf func(*unstructured.Unstructured) string, settled settledFunc) differ {
	return func(prev *ObjectState, obj *unstructured.Unstructured) (ObjectState, []events.Event) {
		next := ObjectState{UID: string(obj.GetUID()), ResourceVersion: obj.GetResourceVersion()}
		if prev != nil {
			next.TemplateHash, next.Revision, next.Open, next.Attrs = prev.TemplateHash, prev.Revision, prev.Open, prev.Attrs
		}
		var evs []events.Event
		t := changeTime(obj)
		hash := hashOf(obj)
		if hash == "" {
			return next, nil // not known yet (a Rollout its controller has not seen)
		}
		if prev == nil || prev.TemplateHash != hash {
			if next.Open {
				evs = append(evs, stopOf(EventDeploy, t, next.Attrs, key(obj, "deploy", strconv.FormatInt(next.Revision, 10)), "superseded"))
			}
			rev := obj.GetGeneration()
			if rev == 0 {
				rev = 1
			}
			next.TemplateHash, next.Revision, next.Open = hash, rev, true
			next.Attrs = map[string]string{
				"kind": strings.ToLower(kind), "namespace": obj.GetNamespace(), "workload": obj.GetName(),
				"service": serviceOf(obj), "image": images(obj), "revision": strconv.FormatInt(rev, 10),
			}
			evs = append(evs, newEvent(EventDeploy, events.StateStart, t, next.Attrs, key(obj, "deploy", strconv.FormatInt(rev, 10))))
		}
		if next.Open {
			if done, outcome := settled(obj, next.Revision); done {
				evs = append(evs, stopOf(EventDeploy, t, next.Attrs, key(obj, "deploy", strconv.FormatInt(next.Revision, 10)), outcome))
				next.Open = false
			}
		}
		return next, evs
	}
}

// rolloutPodHash is a Rollout's pod-template hash as its controller
// computes it (status.currentPodHash): the controller normalises the
// template (a hash of the spec as written changes when it does).
func rolloutPodHash(obj *unstructured.Unstructured) string {
	return nestedString(obj, "status", "currentPodHash")
}

// rolloutStage is the current canary stage of a Rollout, "" when none: the
// weight of the latest setWeight step at or before the current step, while
// a canary (currentPodHash not the stable one) is in progress and not
// aborted.
func rolloutStage(obj *unstructured.Unstructured) (stage, podHash string, weight int64) {
	podHash = nestedString(obj, "status", "currentPodHash")
	stable := nestedString(obj, "status", "stableRS")
	// No stable pods yet: the first revision, which goes out without steps.
	if podHash == "" || stable == "" || podHash == stable {
		return "", "", 0
	}
	if aborted, _, _ := unstructured.NestedBool(obj.Object, "status", "abort"); aborted {
		return "", "", 0
	}
	idx, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "status", "currentStepIndex")
	if !ok || idx == nil {
		return "", "", 0
	}
	i := nestedInt(obj, "status", "currentStepIndex")
	steps, _, _ := unstructured.NestedSlice(obj.Object, "spec", "strategy", "canary", "steps")
	for j := min(int(i), len(steps)-1); j >= 0; j-- {
		step, _ := steps[j].(map[string]any)
		if w, ok := step["setWeight"]; ok {
			switch n := w.(type) {
			case int64:
				weight = n
			case float64:
				weight = int64(n)
			}
			break
		}
	}
	if weight <= 0 {
		return "", "", 0
	}
	return podHash + "/" + strconv.FormatInt(weight, 10), podHash, weight
}

// rolloutDiff derives a Rollout's "deploy" windows (as a workload's, settled
// when the new pods are the stable ones and the Rollout is Healthy) and its
// "canary-step" windows, one per stage.
func rolloutDiff(prev *ObjectState, obj *unstructured.Unstructured) (ObjectState, []events.Event) {
	next, evs := workloadDiffer("Rollout", rolloutPodHash, rolloutSettled)(prev, obj)
	if prev != nil {
		next.Stage, next.StageAttrs = prev.Stage, prev.StageAttrs
	}
	stage, podHash, weight := rolloutStage(obj)
	if stage == next.Stage {
		return next, evs
	}
	t := changeTime(obj)
	if next.Stage != "" {
		outcome := "next-stage"
		if stage == "" {
			if done, how := rolloutSettled(obj, 0); done {
				outcome = how
			} else {
				outcome = "ended"
			}
		}
		evs = append(evs, stopOf(EventCanaryStep, t, next.StageAttrs, key(obj, "step", next.Stage), outcome))
		next.Stage, next.StageAttrs = "", nil
	}
	if stage != "" && prev != nil {
		next.Stage = stage
		next.StageAttrs = map[string]string{
			"kind": "rollout", "namespace": obj.GetNamespace(), "rollout": obj.GetName(), "service": serviceOf(obj),
			"weight": strconv.FormatInt(weight, 10), "revision": podHash,
		}
		evs = append(evs, newEvent(EventCanaryStep, events.StateStart, t, next.StageAttrs, key(obj, "step", stage)))
	} else if stage != "" {
		// A new Rollout mid-canary: its stage is followed from the next one.
		next.Stage = ""
	}
	return next, evs
}

// hpaDiff sends one "scale" point event when the desired replicas change.
func hpaDiff(prev *ObjectState, obj *unstructured.Unstructured) (ObjectState, []events.Event) {
	desired := nestedInt(obj, "status", "desiredReplicas")
	next := ObjectState{UID: string(obj.GetUID()), ResourceVersion: obj.GetResourceVersion(), Replicas: desired}
	if prev == nil || prev.Replicas == 0 || desired == 0 || prev.Replicas == desired {
		// New, or its first status: no change to report yet.
		if prev != nil && desired == 0 {
			next.Replicas = prev.Replicas
		}
		return next, nil
	}
	target := nestedString(obj, "spec", "scaleTargetRef", "name")
	attrs := map[string]string{
		"kind": "horizontalpodautoscaler", "namespace": obj.GetNamespace(), "name": obj.GetName(),
		"target_kind": nestedString(obj, "spec", "scaleTargetRef", "kind"), "target": target, "service": target,
		"from": strconv.FormatInt(prev.Replicas, 10), "to": strconv.FormatInt(desired, 10),
	}
	// A point event: a stop with no window.
	return next, []events.Event{newEvent(EventScale, events.StateStop, changeTime(obj), attrs, key(obj, "scale", obj.GetResourceVersion()))}
}

// configDiffer sends one "config-change" point event per new version of a
// ConfigMap or Secret; only metadata is read and sent.
func configDiffer(kind string) differ {
	return func(prev *ObjectState, obj *unstructured.Unstructured) (ObjectState, []events.Event) {
		next := ObjectState{UID: string(obj.GetUID()), ResourceVersion: obj.GetResourceVersion()}
		if prev != nil && prev.ResourceVersion == next.ResourceVersion {
			return next, nil
		}
		change := "updated"
		if prev == nil {
			change = "created"
		}
		return next, []events.Event{configEvent(kind, obj, change, changeTime(obj))}
	}
}

func configEvent(kind string, obj *unstructured.Unstructured, change string, t time.Time) events.Event {
	attrs := map[string]string{
		"kind": strings.ToLower(kind), "namespace": obj.GetNamespace(), "name": obj.GetName(),
		"change": change, "resource_version": obj.GetResourceVersion(),
	}
	return newEvent(EventConfigChange, events.StateStop, t, attrs, key(obj, "config", change, obj.GetResourceVersion()))
}

// deleted returns the events of an object's deletion: the stop of an open
// window, or a config-change.
func deleted(k Kind, prev ObjectState, obj *unstructured.Unstructured, t time.Time) []events.Event {
	var evs []events.Event
	if k.metadataOnly {
		return append(evs, configEvent(k.Name, obj, "deleted", t))
	}
	if prev.Open {
		evs = append(evs, stopOf(EventDeploy, t, prev.Attrs, key(obj, "deploy", strconv.FormatInt(prev.Revision, 10)), "deleted"))
	}
	if prev.Stage != "" {
		evs = append(evs, stopOf(EventCanaryStep, t, prev.StageAttrs, key(obj, "step", prev.Stage), "deleted"))
	}
	return evs
}
