package kayenta

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/analysis"
)

// failingSource fails the query of one side of one metric.
type failingSource struct{ metric, side string }

func (f failingSource) QueryMetric(_ context.Context, m analysis.CanaryMetricConfig, sc analysis.CanaryScope) ([]analysis.MetricSet, error) {
	if m.Name == f.metric && sc.Scope == f.side {
		return nil, errors.New("down")
	}
	if m.Name == "unpaired" && sc.Scope == "control" {
		return nil, nil // no series and no placeholder: Mix refuses it
	}
	return []analysis.MetricSet{{Name: m.Name, Tags: map[string]string{}, Values: analysis.Series{1, 2, 3}, StepMillis: 60_000}}, nil
}

// TestFailedStage: the stage an execution failed in comes from the error
// analysis.Analyze returns, in the order of Kayenta's pipeline.
func TestFailedStage(t *testing.T) {
	now := time.Now()
	scope := func(name string) analysis.CanaryScope {
		return analysis.CanaryScope{Scope: name, Start: now.Add(-time.Hour), End: now, Step: 60}
	}
	req := func(classifier bool, metrics ...string) analysis.AnalyzeRequest {
		cfg := analysis.CanaryConfig{}
		if classifier {
			cfg.Classifier = &analysis.CanaryClassifierConfig{GroupWeights: map[string]float64{"g": 100}}
		}
		for _, m := range metrics {
			cfg.Metrics = append(cfg.Metrics, analysis.CanaryMetricConfig{Name: m, Groups: []string{"g"}, ScopeName: "default"})
		}
		return analysis.AnalyzeRequest{Config: cfg,
			Scopes:     map[string]analysis.CanaryScopePair{"default": {ControlScope: scope("control"), ExperimentScope: scope("experiment")}},
			Thresholds: analysis.CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}}
	}
	for _, c := range []struct {
		src  failingSource
		req  analysis.AnalyzeRequest
		want string
	}{
		{failingSource{"b", "control"}, req(true, "a", "b"), "fetchControl1"},
		{failingSource{"a", "experiment"}, req(true, "a", "b"), "fetchExperiment0"},
		{failingSource{}, req(true, "a", "unpaired"), "mixMetrics"},
		{failingSource{}, req(false, "a"), "judge"},
		{failingSource{}, req(true), "setupContext"},
	} {
		_, err := analysis.Analyze(context.Background(), c.src, c.req)
		require.Error(t, err)
		require.Equal(t, c.want, failedStage(err), "%v", err)
	}
}
