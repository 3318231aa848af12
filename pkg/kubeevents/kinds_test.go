package kubeevents

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/levitated/levitated/pkg/events"
)

// These tests check the translation from object versions to events; the
// watcher against a real API server is tested in compat/kube.

func obj(t *testing.T, js string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	require.NoError(t, json.Unmarshal([]byte(js), &u.Object))
	return u
}

const deployV1 = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","uid":"u1","resourceVersion":"10","generation":1,
 "labels":{"app":"checkout"},"managedFields":[{"manager":"kubectl","time":"2026-01-02T03:04:05Z"}]},
 "spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"c","image":"web:1"}]}}},"status":{}}`

func TestDeploymentWindow(t *testing.T) {
	diff := Kinds["Deployment"].diff
	// A new Deployment: its first rollout starts.
	st, evs := diff(nil, obj(t, deployV1))
	require.Len(t, evs, 1)
	start := evs[0]
	require.Equal(t, EventDeploy, start.Name)
	require.Equal(t, events.StateStart, start.State)
	require.Equal(t, map[string]string{"kind": "deployment", "namespace": "shop", "workload": "web", "service": "checkout", "image": "web:1", "revision": "1"}, start.Attributes)
	require.Equal(t, "kube:u1:deploy:1", start.IdempotencyKey)
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), start.Time)
	require.True(t, st.Open)

	// Status not there yet: nothing.
	notYet := obj(t, deployV1)
	notYet.SetResourceVersion("11")
	require.NoError(t, unstructured.SetNestedField(notYet.Object, map[string]any{"observedGeneration": int64(1), "replicas": int64(3), "updatedReplicas": int64(3), "availableReplicas": int64(2)}, "status"))
	st, evs = diff(&st, notYet)
	require.Empty(t, evs)
	require.True(t, st.Open)

	// Every replica updated and available: the stop, closing the start by key.
	done := obj(t, deployV1)
	done.SetResourceVersion("12")
	require.NoError(t, unstructured.SetNestedField(done.Object, map[string]any{"observedGeneration": int64(1), "replicas": int64(3), "updatedReplicas": int64(3), "availableReplicas": int64(3)}, "status"))
	st, evs = diff(&st, done)
	require.Len(t, evs, 1)
	require.Equal(t, events.StateStop, evs[0].State)
	require.Equal(t, "kube:u1:deploy:1", evs[0].StartKey)
	require.Equal(t, "settled", evs[0].Attributes["outcome"])
	require.False(t, st.Open)

	// A scale (generation 2, same template): no event.
	scaled := obj(t, deployV1)
	scaled.SetResourceVersion("13")
	scaled.SetGeneration(2)
	require.NoError(t, unstructured.SetNestedField(scaled.Object, int64(5), "spec", "replicas"))
	st, evs = diff(&st, scaled)
	require.Empty(t, evs)

	// A new image (generation 3): a new start with it, its revision 3.
	v2 := obj(t, deployV1)
	v2.SetResourceVersion("14")
	v2.SetGeneration(3)
	require.NoError(t, unstructured.SetNestedSlice(v2.Object, []any{map[string]any{"name": "c", "image": "web:2"}}, "spec", "template", "spec", "containers"))
	st, evs = diff(&st, v2)
	require.Len(t, evs, 1)
	require.Equal(t, "web:2", evs[0].Attributes["image"])
	require.Equal(t, "3", evs[0].Attributes["revision"])

	// Another image before it settled: the open window is superseded.
	v3 := obj(t, deployV1)
	v3.SetResourceVersion("15")
	v3.SetGeneration(4)
	require.NoError(t, unstructured.SetNestedSlice(v3.Object, []any{map[string]any{"name": "c", "image": "web:3"}}, "spec", "template", "spec", "containers"))
	_, evs = diff(&st, v3)
	require.Len(t, evs, 2)
	require.Equal(t, "superseded", evs[0].Attributes["outcome"])
	require.Equal(t, "kube:u1:deploy:3", evs[0].StartKey)
	require.Equal(t, "web:3", evs[1].Attributes["image"])
	for _, e := range evs {
		require.NoError(t, events.Validate(&e, events.Limits{}))
	}
}

const rolloutJSON = `{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"checkout","namespace":"shop","uid":"r1","resourceVersion":"1","generation":2},
 "spec":{"template":{"spec":{"containers":[{"name":"c","image":"c:2"}]}},
  "strategy":{"canary":{"steps":[{"setWeight":20},{"pause":{}},{"setWeight":40},{"pause":{}}]}}},
 "status":{"stableRS":"aaa","currentPodHash":"bbb","currentStepIndex":0,"phase":"Progressing"}}`

func TestRolloutSteps(t *testing.T) {
	diff := Kinds["Rollout"].diff
	prev := &ObjectState{UID: "r1", ResourceVersion: "0", TemplateHash: "aaa", Revision: 1}
	var got []string
	step := func(idx int64, mutate func(*unstructured.Unstructured)) {
		o := obj(t, rolloutJSON)
		require.NoError(t, unstructured.SetNestedField(o.Object, idx, "status", "currentStepIndex"))
		if mutate != nil {
			mutate(o)
		}
		st, evs := diff(prev, o)
		prev = &st
		for _, e := range evs {
			require.NoError(t, events.Validate(&e, events.Limits{}))
			got = append(got, e.Name+" "+e.State.String()+" "+e.Attributes["weight"]+e.Attributes["outcome"])
		}
	}
	step(0, nil)
	step(1, nil) // the pause of the 20 % stage: no change
	step(2, nil)
	step(3, nil)
	step(4, func(o *unstructured.Unstructured) { // done: the canary is stable
		require.NoError(t, unstructured.SetNestedField(o.Object, "bbb", "status", "stableRS"))
		require.NoError(t, unstructured.SetNestedField(o.Object, "Healthy", "status", "phase"))
	})
	require.Equal(t, []string{
		"deploy start ", "canary-step start 20",
		"canary-step stop 20next-stage", "canary-step start 40",
		"deploy stop settled", "canary-step stop 40settled",
	}, got)
}

func TestRolloutAbort(t *testing.T) {
	diff := Kinds["Rollout"].diff
	prev := &ObjectState{UID: "r1", ResourceVersion: "0", TemplateHash: "aaa", Revision: 1}
	st, _ := diff(prev, obj(t, rolloutJSON))
	o := obj(t, rolloutJSON)
	o.SetResourceVersion("2")
	require.NoError(t, unstructured.SetNestedField(o.Object, int64(2), "status", "currentStepIndex"))
	require.NoError(t, unstructured.SetNestedField(o.Object, true, "status", "abort"))
	_, evs := diff(&st, o)
	require.Len(t, evs, 2)
	require.Equal(t, "aborted", evs[0].Attributes["outcome"])
	require.Equal(t, EventDeploy, evs[0].Name)
	require.Equal(t, EventCanaryStep, evs[1].Name)
	require.Equal(t, "aborted", evs[1].Attributes["outcome"])
	require.Equal(t, "20", evs[1].Attributes["weight"])
}

func TestHPAScale(t *testing.T) {
	diff := Kinds["HorizontalPodAutoscaler"].diff
	h := `{"metadata":{"name":"web","namespace":"shop","uid":"h1","resourceVersion":"%s"},"spec":{"scaleTargetRef":{"kind":"Deployment","name":"web"}},"status":{"desiredReplicas":%d}}`
	st, evs := diff(nil, obj(t, sprintf(h, "1", 2)))
	require.Empty(t, evs, "a new HPA is no scale change")
	st, evs = diff(&st, obj(t, sprintf(h, "2", 2)))
	require.Empty(t, evs)
	_, evs = diff(&st, obj(t, sprintf(h, "3", 4)))
	require.Len(t, evs, 1)
	require.Equal(t, EventScale, evs[0].Name)
	require.Equal(t, events.StateStop, evs[0].State)
	require.Equal(t, "2", evs[0].Attributes["from"])
	require.Equal(t, "4", evs[0].Attributes["to"])
	require.Equal(t, "kube:h1:scale:3", evs[0].IdempotencyKey)
}

func TestConfigChangeHasNoContents(t *testing.T) {
	diff := Kinds["Secret"].diff
	s := obj(t, `{"metadata":{"name":"db","namespace":"shop","uid":"s1","resourceVersion":"7"}}`)
	st, evs := diff(nil, s)
	require.Len(t, evs, 1)
	require.Equal(t, "created", evs[0].Attributes["change"])
	_, evs = diff(&st, s)
	require.Empty(t, evs, "the same version again")
	s.SetResourceVersion("8")
	_, evs = diff(&st, s)
	require.Len(t, evs, 1)
	require.Equal(t, map[string]string{"kind": "secret", "namespace": "shop", "name": "db", "change": "updated", "resource_version": "8"}, evs[0].Attributes)
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
