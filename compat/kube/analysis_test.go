package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	analysisutil "github.com/argoproj/argo-rollouts/utils/analysis"
	"github.com/stretchr/testify/require"
)

// The canary hashes of the three cases, beside the stable pods' "stable0".
const (
	stableHash    = "stable0"
	healthyHash   = "healthy0" // 0.5 % errors, like the stable pods
	regressedHash = "regressed0"
	idleHash      = "idle0" // no series at all: a stage with no traffic
)

// TestAnalysisTemplates has the real Argo Rollouts controller evaluate
// every AnalysisTemplate of deploy/argo-rollouts, as shipped (its
// arguments, schedule, limits and provider), against levitated holding a
// checkout service's RED series and an open canary-step window of 10
// minutes: for a healthy canary each AnalysisRun ends Successful, for a
// canary with 8 % errors (the stable pods have 0.5 %) Failed, and for a
// canary with no traffic never Successful. The runs are made as a Rollout
// makes them (analysisutil.NewAnalysisRunFromTemplates) with the values a
// Rollout passes for podTemplateHashValue.
func TestAnalysisTemplates(t *testing.T) {
	t.Parallel()
	const ns = "analysis"
	namespace(t, ns)
	analysisTokenSecret(t, ns)
	ctx := context.Background()

	// The Kayenta canary config, stored in levitated as
	// analysis-kayenta.yaml says.
	for _, d := range readDocs(t, argoDir+"/analysis-kayenta.yaml") {
		if d.Kind != "ConfigMap" {
			continue
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		require.NoError(t, json.Unmarshal(d.JSON, &cm))
		resp, err := http.Post(levitatedURL+"/canaryConfig", "application/json", strings.NewReader(cm.Data["checkout-canary.json"]))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	}

	now := time.Now()
	stepStart := now.Add(-10 * time.Minute).Truncate(time.Second)
	tr := newTraffic("checkout", 1)
	tracks := []track{
		{hash: stableHash, share: 0.6, errorRatio: 0.005, latency: 0.1},
		{hash: healthyHash, share: 0.2, errorRatio: 0.005, latency: 0.1},
		{hash: regressedHash, share: 0.2, errorRatio: 0.08, latency: 0.1},
	}
	tr.mustWrite(t, now.Add(-20*time.Minute), now, tracks...)
	background(t, 5*time.Second, func() {
		if err := tr.write(time.Time{}, time.Now(), tracks...); err != nil {
			t.Errorf("background traffic: %v", err)
		}
	})
	postEvent(t, map[string]any{"name": "canary-step", "state": "start", "timestamp": stepStart.Unix(),
		"attributes": map[string]string{"service": "checkout", "weight": "40"}, "source": "compat-kube"})

	templates := analysisTemplates(t)
	require.Len(t, templates, 6, "the examples of deploy/argo-rollouts")
	for file, at := range templates {
		b, err := json.Marshal(at)
		require.NoError(t, err)
		// Accepted by the API server with the CRD installed.
		createIn(t, "/apis/argoproj.io/v1alpha1/namespaces/%s/analysistemplates", ns, b)
		_ = file
	}

	// analysis-gate.yaml asks the change-impact gate about the service's
	// latest canary step, with no canary hash to vary: it is accepted
	// above, and run by the controller for services of its own by
	// TestAnalysisGate (gate_test.go).
	delete(templates, "analysis-gate.yaml")

	type run struct {
		file, canary string
		name         string
		want         []argov1alpha1.AnalysisPhase
	}
	var runs []run
	never := []argov1alpha1.AnalysisPhase{argov1alpha1.AnalysisPhaseInconclusive, argov1alpha1.AnalysisPhaseError}
	for file, at := range templates {
		for _, c := range []struct {
			hash string
			want []argov1alpha1.AnalysisPhase
		}{
			{healthyHash, []argov1alpha1.AnalysisPhase{argov1alpha1.AnalysisPhaseSuccessful}},
			{regressedHash, []argov1alpha1.AnalysisPhase{argov1alpha1.AnalysisPhaseFailed}},
			{idleHash, never},
		} {
			if file == "analysis-kayenta.yaml" && c.hash == idleHash {
				// Kayenta's rule, which levitated's Kayenta API keeps: when
				// half the metrics or more have no data the canary fails
				// with score 0, and Argo's Kayenta provider has no other
				// phase for a score under marginal. Never Successful.
				c.want = []argov1alpha1.AnalysisPhase{argov1alpha1.AnalysisPhaseFailed}
			}
			str := func(s string) *string { return &s }
			args := []argov1alpha1.Argument{
				{Name: "service", Value: str("checkout")},
				{Name: "stable-hash", Value: str(stableHash)},
				{Name: "canary-hash", Value: str(c.hash)},
			}
			// Only the arguments the template declares, as a Rollout's
			// analysis step passes them.
			args = slices.DeleteFunc(args, func(a argov1alpha1.Argument) bool {
				return !slices.ContainsFunc(at.Spec.Args, func(b argov1alpha1.Argument) bool { return b.Name == a.Name })
			})
			name := strings.TrimSuffix(file, ".yaml") + "-" + c.hash
			ar, err := analysisutil.NewAnalysisRunFromTemplates([]*argov1alpha1.AnalysisTemplate{at}, nil, args, nil, nil, nil, nil, name, "", ns)
			require.NoError(t, err, file)
			ar.APIVersion, ar.Kind = "argoproj.io/v1alpha1", "AnalysisRun"
			b, err := json.Marshal(ar)
			require.NoError(t, err)
			require.NoError(t, env.create(ctx, fmt.Sprintf("/apis/argoproj.io/v1alpha1/namespaces/%s/analysisruns", ns), b), name)
			runs = append(runs, run{file: file, canary: c.hash, name: name, want: c.want})
		}
	}

	// The controller evaluates them all at once; the longest schedule
	// (analysis-prometheus.yaml, three measurements a minute apart) decides
	// how long this takes.
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(5 * time.Minute)
			for {
				var ar argov1alpha1.AnalysisRun
				if err := env.get(ctx, fmt.Sprintf("/apis/argoproj.io/v1alpha1/namespaces/%s/analysisruns/%s", ns, r.name), &ar); err != nil {
					t.Error(err)
					return
				}
				if ar.Status.Phase.Completed() {
					if !slices.Contains(r.want, ar.Status.Phase) {
						t.Errorf("%s, canary %s: want %v\n%s", r.file, r.canary, r.want, describeRun(&ar))
					} else {
						t.Logf("%s, canary %s: %s", r.file, r.canary, describeRun(&ar))
					}
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("%s, canary %s: not complete within 5 minutes\n%s", r.file, r.canary, describeRun(&ar))
					return
				}
				time.Sleep(time.Second)
			}
		}()
	}
	wg.Wait()
}
