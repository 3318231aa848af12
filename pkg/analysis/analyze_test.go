package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// memSource is an in-memory Source: series by scope name and metric name.
// A metric it has nothing for yields Kayenta's untagged placeholder.
type memSource struct {
	data  map[string]map[string][]MetricSet
	err   error
	calls []string
	// cancel, if set, is called on the first query.
	cancel context.CancelFunc
}

func (s *memSource) QueryMetric(ctx context.Context, m CanaryMetricConfig, scope CanaryScope) ([]MetricSet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.calls = append(s.calls, scope.Scope+"/"+m.Name)
	if s.cancel != nil {
		s.cancel()
	}
	if s.err != nil {
		return nil, s.err
	}
	if sets, ok := s.data[scope.Scope][m.Name]; ok {
		return sets, nil
	}
	return []MetricSet{{Name: m.Name, StartTimeMillis: scope.Start.UnixMilli(), EndTimeMillis: scope.End.UnixMilli(), StepMillis: scope.Step * 1000}}, nil
}

func testScopes() map[string]CanaryScopePair {
	start := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	end := start.Add(30 * time.Minute)
	return map[string]CanaryScopePair{"default": {
		ControlScope:    CanaryScope{Scope: "checkout-baseline", Location: "eu", Start: start, End: end, Step: 60},
		ExperimentScope: CanaryScope{Scope: "checkout-canary", Location: "eu", Start: start, End: end, Step: 60},
	}}
}

func ramp(n int, from, step float64) Series {
	s := make(Series, n)
	for i := range s {
		s[i] = from + float64(i%7)*step
	}
	return s
}

func set(name string, values Series, tags map[string]string) MetricSet {
	return MetricSet{Name: name, Tags: tags, Values: values, StartTimeMillis: 1735732800000, EndTimeMillis: 1735734600000, StepMillis: 60000}
}

func TestAnalyze(t *testing.T) {
	var cfg CanaryConfig
	require.NoError(t, json.Unmarshal([]byte(kayentaConfigJSON), &cfg))
	src := &memSource{data: map[string]map[string][]MetricSet{
		"checkout-baseline": {
			"errors":  {set("errors", ramp(30, 0, 0), nil)},
			"latency": {set("latency", ramp(30, 0.10, 0.01), map[string]string{"le": "0.99"}), set("other", Series{1}, nil)},
			"cpu":     {set("cpu", ramp(30, 1, 0.1), nil)},
		},
		"checkout-canary": {
			"errors":  {set("errors", ramp(30, 0, 0), nil)},
			"latency": {set("latency", ramp(30, 0.30, 0.01), map[string]string{"le": "0.99"})},
		},
	}}
	got, err := Analyze(context.Background(), src, AnalyzeRequest{Config: cfg, Scopes: testScopes(), Thresholds: *cfg.Classifier.ScoreThresholds})
	require.NoError(t, err)

	require.Equal(t, []string{
		"checkout-baseline/errors", "checkout-canary/errors",
		"checkout-baseline/latency", "checkout-canary/latency",
		"checkout-baseline/cpu", "checkout-canary/cpu",
	}, src.calls)

	require.Len(t, got.MetricSetPairs, 3)
	require.Equal(t, map[string]string{"le": "0.99"}, got.MetricSetPairs[1].Tags)
	// The canary has no cpu series: Kayenta's placeholder, padded to the
	// scope's 30 steps with NaN.
	cpu := got.MetricSetPairs[2].Values[Experiment]
	require.Len(t, cpu, 30)
	require.True(t, math.IsNaN(cpu[0]))

	r := got.Result
	require.Equal(t, []string{ClassificationPass, ClassificationHigh, ClassificationNodata},
		[]string{r.Results[0].Classification, r.Results[1].Classification, r.Results[2].Classification})
	require.Equal(t, "The Canary and Baseline data are identical", r.Results[0].ClassificationReason)
	require.Equal(t, "latency was classified as High", r.Results[1].ClassificationReason)
	require.True(t, r.Results[2].Muted)
	// availability 100 × 0.6 + performance 0 × 0.4; the muted Nodata is not scored.
	require.Equal(t, Float(60), r.Score.Score)
	require.Equal(t, ScoreFail, r.Score.Classification)
}

func TestAnalyzeMismatchedTags(t *testing.T) {
	cfg := CanaryConfig{
		Metrics:    []CanaryMetricConfig{{Name: "latency", Groups: []string{"g"}, ScopeName: "default"}},
		Classifier: &CanaryClassifierConfig{},
	}
	src := &memSource{data: map[string]map[string][]MetricSet{
		"checkout-baseline": {"latency": {set("latency", ramp(30, 0.10, 0.01), map[string]string{"pod": "checkout-baseline-1"})}},
		"checkout-canary":   {"latency": {set("latency", ramp(30, 0.30, 0.01), map[string]string{"pod": "checkout-canary-1"})}},
	}}
	req := AnalyzeRequest{Config: cfg, Scopes: testScopes(), Thresholds: CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}}

	// Kayenta: two half-NaN pairs, both Nodata, the canary fails for lack of data.
	got, err := Analyze(context.Background(), src, req)
	require.NoError(t, err)
	require.Len(t, got.MetricSetPairs, 2)
	require.Equal(t, "Canary Failed: 50% or more metrics returned NODATA", got.Result.Score.ClassificationReason)

	// Dropping the label that names the pod pairs the series and finds the regression.
	req.Mix = MixOptions{IgnoreTags: []string{"pod"}, RejectUnpaired: true}
	got, err = Analyze(context.Background(), src, req)
	require.NoError(t, err)
	require.Len(t, got.MetricSetPairs, 1)
	require.Equal(t, ClassificationHigh, got.Result.Results[0].Classification)
}

func TestAnalyzeErrors(t *testing.T) {
	base := CanaryConfig{
		Metrics:    []CanaryMetricConfig{{Name: "m", ScopeName: "default"}, {Name: "n", ScopeName: "default"}},
		Classifier: &CanaryClassifierConfig{},
	}
	th := CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}

	_, err := Analyze(context.Background(), &memSource{}, AnalyzeRequest{Config: CanaryConfig{}, Scopes: testScopes(), Thresholds: th})
	require.EqualError(t, err, "canary config: metrics is empty; there is nothing to analyse")

	noScope := base
	noScope.Metrics = []CanaryMetricConfig{{Name: "m"}}
	_, err = Analyze(context.Background(), &memSource{}, AnalyzeRequest{Config: noScope, Scopes: testScopes(), Thresholds: th})
	require.EqualError(t, err, `canary config: metrics[0] ("m"): scopeName is empty`)

	_, err = Analyze(context.Background(), &memSource{}, AnalyzeRequest{Config: base, Scopes: map[string]CanaryScopePair{}, Thresholds: th})
	require.EqualError(t, err, `canary config: metrics[0] ("m"): scope "default" is not in the request`)

	boom := errors.New("storage: closed")
	_, err = Analyze(context.Background(), &memSource{err: boom}, AnalyzeRequest{Config: base, Scopes: testScopes(), Thresholds: th})
	require.ErrorIs(t, err, boom)
	require.EqualError(t, err, `query control of metric "m": storage: closed`)

	// A source that finds nothing and makes no placeholder.
	empty := &memSource{data: map[string]map[string][]MetricSet{
		"checkout-baseline": {"m": {}}, "checkout-canary": {"m": {}},
	}}
	_, err = Analyze(context.Background(), empty, AnalyzeRequest{Config: base, Scopes: testScopes(), Thresholds: th})
	require.EqualError(t, err, `pair metric "m": no control metrics found for m and the metric service did not create a placeholder`)

	// Cancelled during the first query: nothing more is queried.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &memSource{cancel: cancel}
	_, err = Analyze(ctx, src, AnalyzeRequest{Config: base, Scopes: testScopes(), Thresholds: th})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []string{"checkout-baseline/m"}, src.calls)
	require.EqualError(t, err, `query experiment of metric "m": context canceled`)

	// A judge error is wrapped.
	noClassifier := base
	noClassifier.Classifier = nil
	_, err = Analyze(context.Background(), &memSource{}, AnalyzeRequest{Config: noClassifier, Scopes: testScopes(), Thresholds: th})
	require.EqualError(t, err, "judge: canary config: classifier is missing")
}
