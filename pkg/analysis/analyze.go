package analysis

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// CanaryScope is where and when to query one side of a canary
// (kayenta-core canary/CanaryScope.java).
type CanaryScope struct {
	Scope               string            `json:"scope"`
	Location            string            `json:"location,omitempty"`
	Start               time.Time         `json:"start"`
	End                 time.Time         `json:"end"`
	Step                int64             `json:"step"` // seconds
	ExtendedScopeParams map[string]string `json:"extendedScopeParams,omitempty"`
}

// CanaryScopePair is the control and experiment scope of one named scope
// (kayenta-core canary/CanaryScopePair.java).
type CanaryScopePair struct {
	ControlScope    CanaryScope `json:"controlScope"`
	ExperimentScope CanaryScope `json:"experimentScope"`
}

// Source is the judge's only way to data.
type Source interface {
	// QueryMetric returns the series of one metric over one scope, one
	// MetricSet per tag set, each named metric.Name. When the query matches
	// nothing it returns one untagged placeholder with the scope's times and
	// no values, as Kayenta's metrics services do; an empty result is an
	// error in Analyze.
	QueryMetric(ctx context.Context, metric CanaryMetricConfig, scope CanaryScope) ([]MetricSet, error)
}

// AnalyzeRequest is one canary analysis: what Kayenta's
// CanaryExecutionRequest and the stored config carry.
type AnalyzeRequest struct {
	Config     CanaryConfig
	Scopes     map[string]CanaryScopePair // by CanaryMetricConfig.ScopeName
	Thresholds CanaryClassifierThresholdsConfig
	Mix        MixOptions // zero value: Kayenta's pairing
	Judge      Options
	// Concurrency is how many queries run at once. 0 or 1 is Kayenta's
	// pipeline: one query at a time, in order, stopping at the first
	// error. With more, every scope is looked up first, then all queries
	// run, at most Concurrency at once, before the first metric is paired;
	// errors are reported in the same order as with one.
	Concurrency int
}

// Analysis is the outcome of Analyze: the paired data and the verdict.
type Analysis struct {
	MetricSetPairs []MetricSetPair
	Result         CanaryJudgeResult
}

// QueryError is a Source's failure to query one side of one metric.
type QueryError struct {
	Metric int    // the index of the metric in the config
	Name   string // the metric's name
	Side   string // Control or Experiment
	Err    error
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("query %s of metric %q: %v", e.Side, e.Name, e.Err)
}

func (e *QueryError) Unwrap() error { return e.Err }

// PairError is a metric whose control and experiment series do not pair
// (Mix's error).
type PairError struct {
	Metric int    // the index of the metric in the config
	Name   string // the metric's name
	Err    error
}

func (e *PairError) Error() string { return fmt.Sprintf("pair metric %q: %v", e.Name, e.Err) }
func (e *PairError) Unwrap() error { return e.Err }

// Analyze runs a canary analysis as Kayenta's pipeline does: for each metric
// in order, query the control scope and the experiment scope, pair the
// series (Mix), then Judge all pairs. It stops at the first error (a
// *QueryError, a *PairError, or the judge's, prefixed "judge: ") and checks
// ctx before every query. Every judge of levitated runs through it: the
// Kayenta-compatible API, the native analysis API and its Flagger webhook,
// and change impact (through the native API).
func Analyze(ctx context.Context, src Source, req AnalyzeRequest) (Analysis, error) {
	metrics := req.Config.Metrics
	if len(metrics) == 0 {
		return Analysis{}, fmt.Errorf("canary config: metrics is empty; there is nothing to analyse")
	}
	fetch := func(i int) (control, experiment []MetricSet, err error) {
		scope, err := scopeOf(i, metrics[i], req.Scopes)
		if err != nil {
			return nil, nil, err
		}
		if control, err = query(ctx, src, i, metrics[i], scope.ControlScope, Control); err != nil {
			return nil, nil, err
		}
		experiment, err = query(ctx, src, i, metrics[i], scope.ExperimentScope, Experiment)
		return control, experiment, err
	}
	if req.Concurrency > 1 {
		var err error
		if fetch, err = prefetch(ctx, src, req); err != nil {
			return Analysis{}, err
		}
	}
	var pairs []MetricSetPair
	for i, m := range metrics {
		control, experiment, err := fetch(i)
		if err != nil {
			return Analysis{}, err
		}
		p, err := mixMetric(m.Name, control, experiment, req.Mix)
		if err != nil {
			return Analysis{}, &PairError{Metric: i, Name: m.Name, Err: err}
		}
		pairs = append(pairs, p...)
	}
	result, err := Judge(req.Config, req.Thresholds, pairs, req.Judge)
	if err != nil {
		return Analysis{}, fmt.Errorf("judge: %w", err)
	}
	return Analysis{MetricSetPairs: pairs, Result: result}, nil
}

// prefetch looks up every metric's scope, then runs all queries, at most
// req.Concurrency at once, and returns what fetch returns for each metric:
// its sets, or its first error (the control's before the experiment's).
func prefetch(ctx context.Context, src Source, req AnalyzeRequest) (func(int) ([]MetricSet, []MetricSet, error), error) {
	metrics := req.Config.Metrics
	type fetched struct {
		sets []MetricSet
		err  error
	}
	got := make([][2]fetched, len(metrics))
	scopes := make([][2]CanaryScope, len(metrics))
	for i, m := range metrics {
		scope, err := scopeOf(i, m, req.Scopes)
		if err != nil {
			return nil, err
		}
		scopes[i] = [2]CanaryScope{scope.ControlScope, scope.ExperimentScope}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, req.Concurrency)
	for i, m := range metrics {
		for j, side := range [2]string{Control, Experiment} {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				got[i][j].sets, got[i][j].err = query(ctx, src, i, m, scopes[i][j], side)
			})
		}
	}
	wg.Wait()
	return func(i int) ([]MetricSet, []MetricSet, error) {
		for _, f := range got[i] {
			if f.err != nil {
				return nil, nil, f.err
			}
		}
		return got[i][0].sets, got[i][1].sets, nil
	}, nil
}

// scopeOf is the scope pair of metric i.
func scopeOf(i int, m CanaryMetricConfig, scopes map[string]CanaryScopePair) (CanaryScopePair, error) {
	if m.ScopeName == "" {
		return CanaryScopePair{}, fmt.Errorf("canary config: metrics[%d] (%q): scopeName is empty", i, m.Name)
	}
	scope, ok := scopes[m.ScopeName]
	if !ok {
		return CanaryScopePair{}, fmt.Errorf("canary config: metrics[%d] (%q): scope %q is not in the request", i, m.Name, m.ScopeName)
	}
	return scope, nil
}

func query(ctx context.Context, src Source, i int, m CanaryMetricConfig, scope CanaryScope, side string) ([]MetricSet, error) {
	if err := ctx.Err(); err != nil {
		return nil, &QueryError{Metric: i, Name: m.Name, Side: side, Err: err}
	}
	sets, err := src.QueryMetric(ctx, m, scope)
	if err != nil {
		return nil, &QueryError{Metric: i, Name: m.Name, Side: side, Err: err}
	}
	// Kayenta filters the query result by metric name (mixAll).
	out := sets[:0:0]
	for _, ms := range sets {
		if ms.Name == m.Name {
			out = append(out, ms)
		}
	}
	return out, nil
}
