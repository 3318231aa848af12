package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// watcher is one `levitated kube-events` process on the environment's API
// server, sending to the environment's levitated.
type watcher struct {
	p *process
}

func startWatcher(t *testing.T, ns string, n int) *watcher {
	t.Helper()
	p, err := env.start(fmt.Sprintf("kube-events-%s-%d", ns, n), nil, os.Getenv(envLevitated), "kube-events",
		"--kubeconfig", env.kubeconfig, "--levitated.url", levitatedURL, "--namespace", ns, "--state.namespace", ns,
		"--retry-interval", "500ms", "--state.save-interval", "100ms", "--log.level", "debug")
	require.NoError(t, err)
	w := &watcher{p: p}
	t.Cleanup(func() { stopProcess(p) })
	return w
}

// stop stops the watcher with SIGTERM; it must exit 0.
func (w *watcher) stop(t *testing.T) {
	t.Helper()
	stopProcess(w.p)
	require.NoError(t, w.p.err, "kube-events exit; log %s", w.p.log)
}

// stateVersion is the resourceVersion of the watcher's state ConfigMap and
// the kinds it has listed.
func stateVersion(t *testing.T, ns string) (string, int) {
	var cm struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	if err := env.get(context.Background(), "/api/v1/namespaces/"+ns+"/configmaps/levitated-kube-events", &cm); err != nil {
		return "", 0
	}
	var st struct {
		Kinds map[string]string `json:"kinds"`
	}
	_ = json.Unmarshal([]byte(cm.Data["state.json"]), &st)
	return cm.Metadata.ResourceVersion, len(st.Kinds)
}

// waitListed waits until the watcher has listed every kind and saved its
// state after version before (the state ConfigMap's resourceVersion).
func waitListed(t *testing.T, w *watcher, ns, before string) {
	t.Helper()
	require.NoError(t, waitFor(w.p, time.Minute, "state saved", func() bool {
		rv, kinds := stateVersion(t, ns)
		return rv != "" && rv != before && kinds == 7
	}))
}

type storedEvent struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	State          string            `json:"state"`
	Attributes     map[string]string `json:"attributes"`
	Source         string            `json:"source"`
	IdempotencyKey string            `json:"idempotency_key"`
}

func (e storedEvent) String() string {
	keys := make([]string, 0, len(e.Attributes))
	for k := range e.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Name, e.State)
	for _, k := range keys {
		if k == "namespace" || k == "resource_version" || k == "kind" {
			continue
		}
		fmt.Fprintf(&b, " %s=%s", k, e.Attributes[k])
	}
	return b.String()
}

// kubeEvents lists the events the watchers sent for a namespace, oldest
// first.
func kubeEvents(t *testing.T, ns string) []storedEvent {
	t.Helper()
	q := url.Values{"match": {`namespace="` + ns + `"`}, "start": {"0"}, "limit": {"1000"}}
	var out struct {
		Events []storedEvent `json:"events"`
	}
	httpGetJSON(t, levitatedURL+"/api/v1/events?"+q.Encode(), &out)
	var evs []storedEvent
	for _, e := range out.Events {
		if e.Source == "kube-events" {
			evs = append(evs, e)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].ID < evs[j].ID })
	return evs
}

// waitEvents waits until the namespace's events, as strings, are want.
func waitEvents(t *testing.T, w *watcher, ns string, want []string) {
	t.Helper()
	var got []string
	err := waitFor(w.p, time.Minute, fmt.Sprintf("%d events", len(want)), func() bool {
		got = got[:0]
		for _, e := range kubeEvents(t, ns) {
			got = append(got, e.String())
		}
		return slices.Equal(got, want)
	})
	require.NoError(t, err, "got:\n%s\nwant:\n%s\nwatcher log:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), tail(readFile(w.p.log), 40))
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func mustDo(t *testing.T, method, path, contentType, body string) {
	t.Helper()
	code, b, err := env.do(context.Background(), method, path, contentType, []byte(body))
	require.NoError(t, err)
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, code, "%s %s: %s", method, path, b)
}

// deploymentStatus sets a Deployment's status as its controller would once
// every replica of generation gen runs.
func deploymentStatus(t *testing.T, ns, name string, gen, replicas int) {
	t.Helper()
	mustDo(t, http.MethodPatch, "/apis/apps/v1/namespaces/"+ns+"/deployments/"+name+"/status", "application/merge-patch+json",
		fmt.Sprintf(`{"status":{"observedGeneration":%d,"replicas":%d,"updatedReplicas":%d,"readyReplicas":%d,"availableReplicas":%d}}`, gen, replicas, replicas, replicas, replicas))
}

func setImage(t *testing.T, ns, name, image string) {
	t.Helper()
	mustDo(t, http.MethodPatch, "/apis/apps/v1/namespaces/"+ns+"/deployments/"+name, "application/strategic-merge-patch+json",
		`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"`+image+`"}]}}}}`)
}

// TestKubeEvents runs `levitated kube-events` against the real API server:
// a Deployment's image update (with the status its controller would set)
// is a deploy start and stop with the new image, an HPA's desired replicas
// changing and a ConfigMap update are one event each, a Secret's change
// carries none of its contents, a Rollout's canary stages are canary-step
// windows with their weights, and a restart, with or without changes while
// the watcher was down, sends nothing twice.
func TestKubeEvents(t *testing.T) {
	t.Parallel()
	const ns = "events"
	namespace(t, ns)
	replicaSetController(t, ns)

	// Objects there before the first run are not changes.
	mustDo(t, http.MethodPost, "/api/v1/namespaces/"+ns+"/configmaps", "application/json",
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"old"},"data":{"k":"v"}}`)
	w := startWatcher(t, ns, 1)
	waitListed(t, w, ns, "")

	// A Deployment, created and rolled out, then a new image.
	mustDo(t, http.MethodPost, "/apis/apps/v1/namespaces/"+ns+"/deployments", "application/json", `{"apiVersion":"apps/v1","kind":"Deployment",
	  "metadata":{"name":"web","labels":{"app":"web"}},
	  "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
	    "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"example/web:1"}]}}}}`)
	deploymentStatus(t, ns, "web", 1, 2)
	setImage(t, ns, "web", "example/web:2")
	want := []string{
		"deploy start image=example/web:1 revision=1 service=web workload=web",
		"deploy stop image=example/web:1 outcome=settled revision=1 service=web workload=web",
		"deploy start image=example/web:2 revision=2 service=web workload=web",
	}
	waitEvents(t, w, ns, want)
	deploymentStatus(t, ns, "web", 2, 2)
	want = append(want, "deploy stop image=example/web:2 outcome=settled revision=2 service=web workload=web")
	waitEvents(t, w, ns, want)

	// An HPA: its first status is no change; 2 to 4 replicas is one event.
	mustDo(t, http.MethodPost, "/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers", "application/json", `{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
	  "metadata":{"name":"web"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":2,"maxReplicas":10,
	    "metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":70}}}]}}`)
	hpaStatus := func(cur, desired int) {
		mustDo(t, http.MethodPatch, "/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers/web/status", "application/merge-patch+json",
			fmt.Sprintf(`{"status":{"currentReplicas":%d,"desiredReplicas":%d}}`, cur, desired))
	}
	hpaStatus(2, 2)
	hpaStatus(2, 4)
	want = append(want, "scale stop from=2 name=web service=web target=web target_kind=Deployment to=4")
	waitEvents(t, w, ns, want)

	// A ConfigMap: created, then updated; a Secret: created, then updated.
	mustDo(t, http.MethodPost, "/api/v1/namespaces/"+ns+"/configmaps", "application/json",
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web-config"},"data":{"LOG_LEVEL":"info"}}`)
	mustDo(t, http.MethodPatch, "/api/v1/namespaces/"+ns+"/configmaps/web-config", "application/merge-patch+json", `{"data":{"LOG_LEVEL":"debug"}}`)
	// ConfigMaps and Secrets come on two watches, which the watcher reads
	// side by side: the Secret is made once the ConfigMap's events are in,
	// so that the order of the four is the order they were made in.
	want = append(want,
		"config-change stop change=created name=web-config",
		"config-change stop change=updated name=web-config",
	)
	waitEvents(t, w, ns, want)
	mustDo(t, http.MethodPost, "/api/v1/namespaces/"+ns+"/secrets", "application/json",
		`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"web-db"},"stringData":{"password":"hunter2-secret-value"}}`)
	mustDo(t, http.MethodPatch, "/api/v1/namespaces/"+ns+"/secrets/web-db", "application/merge-patch+json", `{"stringData":{"password":"hunter3-secret-value"}}`)
	want = append(want,
		"config-change stop change=created name=web-db",
		"config-change stop change=updated name=web-db",
	)
	waitEvents(t, w, ns, want)
	for _, e := range kubeEvents(t, ns) {
		b, _ := json.Marshal(e)
		require.NotContains(t, string(b), "hunter", "an event carries a Secret's contents")
	}

	// An Argo Rollouts Rollout driven by the real controller: its first
	// revision is a deploy window; the second's canary stages are
	// canary-step windows with their weights, promoted stage by stage.
	mustDo(t, http.MethodPost, "/apis/argoproj.io/v1alpha1/namespaces/"+ns+"/rollouts", "application/json", `{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout",
	  "metadata":{"name":"api"},
	  "spec":{"replicas":5,"selector":{"matchLabels":{"app":"api"}},
	    "template":{"metadata":{"labels":{"app":"api"}},"spec":{"containers":[{"name":"api","image":"example/api:1"}]}},
	    "strategy":{"canary":{"steps":[{"setWeight":20},{"pause":{}},{"setWeight":40},{"pause":{}}]}}}}`)
	// The revision is the generation the controller's pod hash was seen
	// at (the controller writes the spec once after its creation).
	generation := func() string {
		var r struct {
			Metadata struct {
				Generation int64 `json:"generation"`
			} `json:"metadata"`
		}
		require.NoError(t, env.get(context.Background(), "/apis/argoproj.io/v1alpha1/namespaces/"+ns+"/rollouts/api", &r))
		return fmt.Sprint(r.Metadata.Generation)
	}
	var apiEvents []string
	require.NoError(t, waitFor(w.p, time.Minute, "the first revision's deploy window", func() bool {
		evs := kubeEvents(t, ns)
		apiEvents = apiEvents[:0]
		for _, e := range evs[len(want):] {
			apiEvents = append(apiEvents, e.String())
		}
		return len(apiEvents) == 2
	}))
	g1 := generation()
	want = append(want,
		"deploy start image=example/api:1 revision="+g1+" service=api workload=api",
		"deploy stop image=example/api:1 outcome=settled revision="+g1+" service=api workload=api")
	waitEvents(t, w, ns, want)
	mustDo(t, http.MethodPatch, "/apis/argoproj.io/v1alpha1/namespaces/"+ns+"/rollouts/api", "application/merge-patch+json",
		`{"spec":{"template":{"spec":{"containers":[{"name":"api","image":"example/api:2"}]}}}}`)
	promote := func(step int32) {
		var r rolloutStatus
		require.NoError(t, waitFor(w.p, time.Minute, fmt.Sprintf("rollout paused at step %d", step), func() bool {
			require.NoError(t, env.get(context.Background(), "/apis/argoproj.io/v1alpha1/namespaces/"+ns+"/rollouts/api", &r))
			return len(r.Status.PauseConditions) > 0 && r.Status.CurrentStepIndex != nil && *r.Status.CurrentStepIndex == step
		}))
		mustDo(t, http.MethodPatch, "/apis/argoproj.io/v1alpha1/namespaces/"+ns+"/rollouts/api/status", "application/merge-patch+json", `{"status":{"pauseConditions":null}}`)
	}
	promote(1)
	promote(3)
	var r rolloutStatus
	require.NoError(t, env.get(context.Background(), "/apis/argoproj.io/v1alpha1/namespaces/"+ns+"/rollouts/api", &r))
	canary := r.Status.CurrentPodHash
	g2 := generation()
	want = append(want,
		"deploy start image=example/api:2 revision="+g2+" service=api workload=api",
		"canary-step start revision="+canary+" rollout=api service=api weight=20",
		"canary-step stop outcome=next-stage revision="+canary+" rollout=api service=api weight=20",
		"canary-step start revision="+canary+" rollout=api service=api weight=40",
		// The controller makes the new pods stable before the Rollout is
		// Healthy: the stage ends first, then the rollout settles.
		"canary-step stop outcome=ended revision="+canary+" rollout=api service=api weight=40",
		"deploy stop image=example/api:2 outcome=settled revision="+g2+" service=api workload=api",
	)
	waitEvents(t, w, ns, want)

	// A restart with no change in between: nothing is sent again.
	// (The version is read once the watcher has stopped: it saves its
	// state on the way out.)
	w.stop(t)
	before, _ := stateVersion(t, ns)
	w = startWatcher(t, ns, 2)
	waitListed(t, w, ns, before)
	waitEvents(t, w, ns, want)

	// Changes while no watcher runs are sent, once, after the restart.
	w.stop(t)
	setImage(t, ns, "web", "example/web:3")
	deploymentStatus(t, ns, "web", 3, 2)
	mustDo(t, http.MethodPatch, "/api/v1/namespaces/"+ns+"/configmaps/web-config", "application/merge-patch+json", `{"data":{"LOG_LEVEL":"warn"}}`)
	before, _ = stateVersion(t, ns)
	w = startWatcher(t, ns, 3)
	waitListed(t, w, ns, before)
	want = append(want,
		"deploy start image=example/web:3 revision=3 service=web workload=web",
		"deploy stop image=example/web:3 outcome=settled revision=3 service=web workload=web",
		"config-change stop change=updated name=web-config",
	)
	// The events sent after the restart may come in any order across kinds.
	sortTail := func(s []string, n int) []string {
		out := slices.Clone(s)
		sort.Strings(out[len(out)-n:])
		return out
	}
	require.NoError(t, waitFor(w.p, time.Minute, "events after the restart", func() bool {
		var got []string
		for _, e := range kubeEvents(t, ns) {
			got = append(got, e.String())
		}
		return len(got) == len(want) && slices.Equal(sortTail(got, 3), sortTail(want, 3))
	}), "got:\n%v", kubeEvents(t, ns))
}
