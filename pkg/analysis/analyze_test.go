package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
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

// lockedSource makes a memSource safe for Analyze's concurrent queries and
// fails the queries named in errs.
type lockedSource struct {
	mu   sync.Mutex
	src  *memSource
	errs map[string]error // by scope/metric
}

func (s *lockedSource) QueryMetric(ctx context.Context, m CanaryMetricConfig, scope CanaryScope) ([]MetricSet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.errs[scope.Scope+"/"+m.Name]; err != nil {
		return nil, err
	}
	return s.src.QueryMetric(ctx, m, scope)
}

func TestAnalyzeConcurrency(t *testing.T) {
	var cfg CanaryConfig
	require.NoError(t, json.Unmarshal([]byte(kayentaConfigJSON), &cfg))
	data := map[string]map[string][]MetricSet{
		"checkout-baseline": {"errors": {set("errors", ramp(30, 0, 0), nil)}, "latency": {set("latency", ramp(30, 0.10, 0.01), nil)}},
		"checkout-canary":   {"errors": {set("errors", ramp(30, 0, 0), nil)}, "latency": {set("latency", ramp(30, 0.30, 0.01), nil)}},
	}
	req := AnalyzeRequest{Config: cfg, Scopes: testScopes(), Thresholds: *cfg.Classifier.ScoreThresholds}
	want, err := Analyze(context.Background(), &memSource{data: data}, req)
	require.NoError(t, err)

	// The same analysis with its queries run at once.
	req.Concurrency = 4
	src := &lockedSource{src: &memSource{data: data}}
	got, err := Analyze(context.Background(), src, req)
	require.NoError(t, err)
	// (NaN is not equal to itself: compare the pairs as printed, the result as JSON.)
	require.Equal(t, fmt.Sprintf("%v", want.MetricSetPairs), fmt.Sprintf("%v", got.MetricSetPairs))
	wantJSON, err := json.Marshal(want.Result)
	require.NoError(t, err)
	gotJSON, err := json.Marshal(got.Result)
	require.NoError(t, err)
	require.JSONEq(t, string(wantJSON), string(gotJSON))
	require.Len(t, src.src.calls, 6)

	// Errors come in the order of the pipeline: metric 0's experiment
	// before metric 1's control, although both failed.
	src = &lockedSource{src: &memSource{data: data}, errs: map[string]error{
		"checkout-canary/errors":    errors.New("canary down"),
		"checkout-baseline/latency": errors.New("baseline down"),
	}}
	_, err = Analyze(context.Background(), src, req)
	var qe *QueryError
	require.ErrorAs(t, err, &qe)
	require.Equal(t, QueryError{Metric: 0, Name: "errors", Side: Experiment, Err: qe.Err}, *qe)
	require.EqualError(t, err, `query experiment of metric "errors": canary down`)
	require.Len(t, src.src.calls, 4, "every query but the two that failed ran")

	// A metric that does not pair comes before a later metric's failed query.
	data["checkout-baseline"]["errors"] = []MetricSet{}
	src = &lockedSource{src: &memSource{data: data}, errs: map[string]error{"checkout-baseline/latency": errors.New("baseline down")}}
	_, err = Analyze(context.Background(), src, req)
	var pe *PairError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, 0, pe.Metric)
	require.EqualError(t, err, `pair metric "errors": no control metrics found for errors and the metric service did not create a placeholder`)

	// A scope missing for a later metric is found before anything runs.
	req.Config.Metrics[2].ScopeName = "other"
	src = &lockedSource{src: &memSource{data: data}}
	_, err = Analyze(context.Background(), src, req)
	require.EqualError(t, err, `canary config: metrics[2] ("cpu"): scope "other" is not in the request`)
	require.Empty(t, src.src.calls)
}

// TestAnalyzeConcurrencyBound: at most Concurrency queries run at once,
// and that many do.
func TestAnalyzeConcurrencyBound(t *testing.T) {
	cfg := CanaryConfig{Classifier: &CanaryClassifierConfig{}}
	for _, n := range []string{"a", "b", "c"} {
		cfg.Metrics = append(cfg.Metrics, CanaryMetricConfig{Name: n, Groups: []string{"g"}, ScopeName: "default"})
	}
	var (
		mu             sync.Mutex
		inFlight, most int
		two            = make(chan struct{})
		twoOnce        sync.Once
	)
	src := sourceFunc(func(ctx context.Context, m CanaryMetricConfig, scope CanaryScope) ([]MetricSet, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == 2 {
			twoOnce.Do(func() { close(two) })
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		select { // the first query waits for a second to run beside it
		case <-two:
		case <-time.After(10 * time.Second):
			return nil, errors.New("no second query ran beside the first")
		}
		return []MetricSet{set(m.Name, ramp(30, 1, 0.1), nil)}, nil
	})
	_, err := Analyze(context.Background(), src, AnalyzeRequest{Config: cfg, Scopes: testScopes(),
		Thresholds: CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}, Concurrency: 2})
	require.NoError(t, err)
	require.Equal(t, 2, most)
}

type sourceFunc func(ctx context.Context, m CanaryMetricConfig, scope CanaryScope) ([]MetricSet, error)

func (f sourceFunc) QueryMetric(ctx context.Context, m CanaryMetricConfig, scope CanaryScope) ([]MetricSet, error) {
	return f(ctx, m, scope)
}
