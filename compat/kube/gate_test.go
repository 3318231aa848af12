package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	analysisutil "github.com/argoproj/argo-rollouts/utils/analysis"
	"github.com/stretchr/testify/require"
)

// TestAnalysisGate has the real Argo Rollouts controller run
// deploy/argo-rollouts/analysis-gate.yaml, as shipped, against levitated's
// change-impact gate: two services remote-write their RED series, 1 %
// errors for ten minutes, then a canary-step starts (an event, as CI sends
// it) and one keeps 1 % while the other's errors rise tenfold. With no
// query written anywhere, the gate judges each open step against the same
// length before it, and the controller drives the AnalysisRun of the
// healthy service to Successful and that of the regressed one to Failed.
func TestAnalysisGate(t *testing.T) {
	t.Parallel()
	const ns = "gate"
	namespace(t, ns)
	analysisTokenSecret(t, ns)
	ctx := context.Background()

	now := time.Now()
	stepStart := now.Add(-5 * time.Minute).Truncate(time.Second)
	type service struct {
		name        string
		after       float64 // error ratio once the step started
		want        argov1alpha1.AnalysisPhase
		traffic     *traffic
		before, now []track
	}
	services := []*service{
		{name: "gate-healthy", after: 0.01, want: argov1alpha1.AnalysisPhaseSuccessful},
		{name: "gate-regressed", after: 0.10, want: argov1alpha1.AnalysisPhaseFailed},
	}
	for i, s := range services {
		s.traffic = newTraffic(s.name, int64(10+i))
		s.before = []track{{hash: stableHash, share: 1, errorRatio: 0.01, latency: 0.1}}
		s.now = []track{{hash: stableHash, share: 1, errorRatio: s.after, latency: 0.1}}
		s.traffic.mustWrite(t, now.Add(-15*time.Minute), stepStart.Add(-tick), s.before...)
		s.traffic.mustWrite(t, stepStart, now, s.now...)
		postEvent(t, map[string]any{"name": "canary-step", "state": "start", "timestamp": stepStart.Unix(),
			"attributes": map[string]string{"service": s.name, "weight": "20"}, "source": "compat-kube"})
	}
	background(t, 5*time.Second, func() {
		for _, s := range services {
			if err := s.traffic.write(time.Time{}, time.Now(), s.now...); err != nil {
				t.Errorf("background traffic: %v", err)
			}
		}
	})

	at := analysisTemplates(t)["analysis-gate.yaml"]
	require.NotNil(t, at, "deploy/argo-rollouts/analysis-gate.yaml")
	b, err := json.Marshal(at)
	require.NoError(t, err)
	createIn(t, "/apis/argoproj.io/v1alpha1/namespaces/%s/analysistemplates", ns, b)

	for _, s := range services {
		str := func(v string) *string { return &v }
		// As a Rollout's analysis step passes it: the service; the token
		// comes from the template's secretKeyRef, resolved by the
		// controller.
		ar, err := analysisutil.NewAnalysisRunFromTemplates([]*argov1alpha1.AnalysisTemplate{at}, nil,
			[]argov1alpha1.Argument{{Name: "service", Value: str(s.name)}}, nil, nil, nil, nil, s.name, "", ns)
		require.NoError(t, err)
		ar.APIVersion, ar.Kind = "argoproj.io/v1alpha1", "AnalysisRun"
		b, err := json.Marshal(ar)
		require.NoError(t, err)
		require.NoError(t, env.create(ctx, fmt.Sprintf("/apis/argoproj.io/v1alpha1/namespaces/%s/analysisruns", ns), b), s.name)
	}

	var wg sync.WaitGroup
	for _, s := range services {
		wg.Go(func() {
			deadline := time.Now().Add(3 * time.Minute)
			for {
				var ar argov1alpha1.AnalysisRun
				if err := env.get(ctx, fmt.Sprintf("/apis/argoproj.io/v1alpha1/namespaces/%s/analysisruns/%s", ns, s.name), &ar); err != nil {
					t.Error(err)
					return
				}
				if ar.Status.Phase.Completed() {
					if ar.Status.Phase != s.want {
						t.Errorf("%s: want %s\n%s", s.name, s.want, describeRun(&ar))
						return
					}
					// The measurement is the gate's answer: its verdict and,
					// for the regressed service, the failing signal.
					if len(ar.Status.MetricResults) != 1 || len(ar.Status.MetricResults[0].Measurements) == 0 {
						t.Errorf("%s: want one metric with a measurement\n%s", s.name, describeRun(&ar))
						return
					}
					ms := ar.Status.MetricResults[0].Measurements
					var answer struct {
						Allowed bool     `json:"allowed"`
						Verdict string   `json:"verdict"`
						Source  string   `json:"source"`
						Reasons []string `json:"reasons"`
						Judge   struct {
							Failing []string `json:"failing_signals"`
						} `json:"judgement"`
					}
					if err := json.Unmarshal([]byte(ms[len(ms)-1].Value), &answer); err != nil {
						t.Errorf("%s: the measurement is not the gate's answer: %v: %q", s.name, err, ms[len(ms)-1].Value)
						return
					}
					t.Logf("%s: %s; the gate: allowed %t, verdict %s, failing %v", s.name, ar.Status.Phase, answer.Allowed, answer.Verdict, answer.Judge.Failing)
					switch s.want {
					case argov1alpha1.AnalysisPhaseSuccessful:
						if !answer.Allowed || answer.Verdict != "pass" {
							t.Errorf("%s: %+v", s.name, answer)
						}
					default:
						if answer.Allowed || answer.Verdict != "fail" || !slices.Contains(answer.Judge.Failing, "error-ratio") {
							t.Errorf("%s: %+v", s.name, answer)
						}
					}
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: not complete within 3 minutes\n%s", s.name, describeRun(&ar))
					return
				}
				time.Sleep(time.Second)
			}
		})
	}
	wg.Wait()
}
