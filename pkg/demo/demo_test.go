package demo

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server"
)

// TestDemo runs the demo as `levitated demo` does: two rollouts on real
// levitated servers, judged stage by stage by levitated's canary judge. The
// outcomes asserted here are the judge's answers over the simulated
// traffic, not values the demo sets: the healthy canary passes every stage
// and is promoted; the canary that regresses at 40 % passes 20 % and is
// rolled back at 40 %, failed by its error ratio.
func TestDemo(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.html")
	var out bytes.Buffer
	results, err := Run(context.Background(), Options{Report: report, Seed: 1, Out: &out})
	require.NoError(t, err, out.String())
	require.Len(t, results, 2)
	t.Log("\n" + out.String())

	healthy := results[0]
	require.Equal(t, "healthy", healthy.Scenario.Name)
	require.Equal(t, OutcomePromoted, healthy.Outcome)
	require.Len(t, healthy.Stages, 4)
	for i, s := range healthy.Stages {
		require.Equal(t, Weights[i], s.Weight)
		require.Equal(t, "Pass", s.Verdict, "stage %d %%: %+v", s.Weight, s.Metrics)
		require.GreaterOrEqual(t, s.Score, 95.0)
		require.Len(t, s.Metrics, 2)
		for _, m := range s.Metrics {
			require.Equal(t, "Pass", m.Classification, m.Explanation)
			require.Contains(t, m.Explanation, "canary and", "the judge explains itself")
		}
		// A healthy canary errs as often as the baseline: 0.5 %.
		require.InDelta(t, 0.005, s.CanaryErrorRatio, 0.003)
		require.InDelta(t, 0.005, s.BaselineErrorRatio, 0.003)
		require.InDelta(t, s.CanaryErrorRatio, s.GateErrorRatio, 1e-12, "the stage gate's query measures the canary pods")
		require.InDelta(t, s.BaselineP99, s.CanaryP99, 0.02)
	}
	require.Equal(t, DecisionPromote, healthy.Stages[3].Decision)

	regression := results[1]
	require.Equal(t, "regression", regression.Scenario.Name)
	require.Equal(t, OutcomeRolledBack, regression.Outcome)
	require.Len(t, regression.Stages, 2, "rolled back at 40 %%, no later stage")
	require.Equal(t, "Pass", regression.Stages[0].Verdict)
	require.Equal(t, DecisionNext, regression.Stages[0].Decision)
	s := regression.Stages[1]
	require.Equal(t, 40, s.Weight)
	require.Equal(t, "Fail", s.Verdict)
	require.Equal(t, DecisionRollback, s.Decision)
	require.Less(t, s.Score, 75.0)
	require.Equal(t, "error-ratio", s.Metrics[0].Name)
	require.Equal(t, "High", s.Metrics[0].Classification)
	require.Contains(t, s.Metrics[0].Explanation, "the metric is critical, so the canary fails")
	require.Greater(t, s.CanaryErrorRatio, 5*s.BaselineErrorRatio)
	require.Greater(t, s.CanaryP99, 2*s.BaselineP99)

	// The table and the report.
	require.Contains(t, out.String(), "-> PROMOTED")
	require.Contains(t, out.String(), "-> ROLLED BACK")
	b, err := os.ReadFile(report)
	require.NoError(t, err)
	html := string(b)
	require.Equal(t, 2*len(chartQueries), strings.Count(html, "<svg "), "every chart of both runs")
	require.Contains(t, html, `<span class="badge pass">promoted</span>`)
	require.Contains(t, html, `<span class="badge fail">rolled back</span>`)
	require.Equal(t, (4+2)*len(chartQueries), strings.Count(html, "<title>canary "), "a region per stage window on every chart")
	require.Contains(t, html, "<title>canary 40 % Fail</title>")
	require.NotContains(t, html, "<script", "self-contained, no script")
	require.NotRegexp(t, `(src|href)=`, html, "nothing fetched from elsewhere")
}

// TestDemoIntoRunningServer plays both runs into one running levitated
// that requires a token, as `levitated demo --url URL --token T` does: the
// judge's outcomes are the same, the runs do not collide, and the server
// keeps the data (two deploy windows, the canary pods' series).
func TestDemoIntoRunningServer(t *testing.T) {
	dir := t.TempDir()
	tok, _, err := auth.NewStore(filepath.Join(dir, auth.TokenFileName)).Create("anonymous", auth.AllScopes, "demo", time.Now())
	require.NoError(t, err)
	so := server.DefaultOptions()
	so.ListenAddress = "127.0.0.1:0"
	so.DataDir = dir
	so.Registry = prometheus.NewRegistry()
	srv, err := server.New(so)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	url := "http://" + srv.Addr().String()

	_, err = Run(context.Background(), Options{URL: url, Seed: 1})
	require.ErrorContains(t, err, "401", "the server wants the token")

	var out bytes.Buffer
	results, err := Run(context.Background(), Options{URL: url, Token: tok, Seed: 1, Out: &out})
	require.NoError(t, err, out.String())
	require.Equal(t, OutcomePromoted, results[0].Outcome)
	require.Equal(t, OutcomeRolledBack, results[1].Outcome)
	require.Equal(t, "Fail", results[1].Stages[1].Verdict)
	require.True(t, results[0].End.Before(results[1].Start) || results[0].End.Equal(results[1].Start), "runs one after the other: %s, %s", results[0].End, results[1].Start)

	c := &client{base: url, http: http.DefaultClient, token: tok}
	v, err := c.query(context.Background(), `count(count_over_time(change_event_active{event_name="deploy"}[2h]))`, time.Now())
	require.NoError(t, err)
	require.Len(t, v, 1)
	require.Equal(t, 1.0, v[0].Value, "one deploy window series: the same service deployed twice")
	evs, err := c.events(context.Background())
	require.NoError(t, err)
	deploys := 0
	for _, e := range evs {
		if e.Name == "deploy" && e.State == "start" {
			deploys++
		}
	}
	require.Equal(t, 2, deploys)
}

// TestDemoFlagger plays the runs with Flagger's pods (Controller flagger):
// the primary's pods checkout-primary-<hash>-<id> with app=checkout-primary,
// the canary's checkout-<hash>-<id>, pod_template_hash on both and no Argo
// Rollouts label. Judged by deploy/flagger's Canary webhook request, the
// healthy canary is promoted and the regressed one rolled back at 40 %;
// the MetricTemplate's query measures the canary's pods only (the gate
// figure equals the canary's error ratio, not the service's).
func TestDemoFlagger(t *testing.T) {
	var out bytes.Buffer
	var pods []sample
	results, err := Run(context.Background(), Options{Controller: ControllerFlagger, Seed: 1, Out: &out,
		AfterStage: func(ctx context.Context, u string, sc Scenario, s Stage) error {
			if sc.Name != "healthy" || s.Weight != 20 {
				return nil
			}
			c := &client{base: u, http: http.DefaultClient}
			var qerr error
			pods, qerr = c.query(ctx, `count by (pod, app, pod_template_hash, rollouts_pod_template_hash) (http_requests_total{service="checkout"})`, s.End)
			return qerr
		}})
	require.NoError(t, err, out.String())
	t.Log("\n" + out.String())
	var names []string
	for _, p := range pods {
		names = append(names, p.Labels["pod"])
		require.Empty(t, p.Labels["rollouts_pod_template_hash"], "no Argo Rollouts label on Flagger's pods")
		require.NotEmpty(t, p.Labels["pod_template_hash"])
		if strings.HasPrefix(p.Labels["pod"], "checkout-primary-") {
			require.Equal(t, "checkout-primary", p.Labels["app"])
		} else {
			require.Equal(t, "checkout", p.Labels["app"])
		}
	}
	require.ElementsMatch(t, []string{"checkout-primary-6d8b7c9f4b-x2k9p", "checkout-primary-6d8b7c9f4b-m4r7t", "checkout-primary-6d8b7c9f4b-z8c1v",
		"checkout-primary-6d8b7c9f4b-b5n2k", "checkout-7f5c4d8b9c-q7w4z"}, names)

	require.Len(t, results, 2)
	require.Equal(t, OutcomePromoted, results[0].Outcome)
	for _, s := range results[0].Stages {
		require.Equal(t, "Pass", s.Verdict, "stage %d %%: %+v", s.Weight, s.Metrics)
		require.InDelta(t, 0.005, s.CanaryErrorRatio, 0.003)
		require.InDelta(t, s.CanaryErrorRatio, s.GateErrorRatio, 1e-12, "the MetricTemplate measures the canary pods")
	}
	require.Equal(t, OutcomeRolledBack, results[1].Outcome)
	require.Len(t, results[1].Stages, 2)
	s := results[1].Stages[1]
	require.Equal(t, "Fail", s.Verdict)
	require.Greater(t, s.CanaryErrorRatio, 5*s.BaselineErrorRatio)
	require.InDelta(t, s.CanaryErrorRatio, s.GateErrorRatio, 1e-12, "the MetricTemplate measures the canary pods")
}
