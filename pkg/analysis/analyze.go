package analysis

import (
	"context"
	"fmt"
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
}

// Analysis is the outcome of Analyze: the paired data and the verdict.
type Analysis struct {
	MetricSetPairs []MetricSetPair
	Result         CanaryJudgeResult
}

// Analyze runs a canary analysis as Kayenta's pipeline does: for each metric
// in order, query the control scope and the experiment scope, pair the
// series (Mix), then Judge all pairs. It stops at the first error and checks
// ctx before every query.
func Analyze(ctx context.Context, src Source, req AnalyzeRequest) (Analysis, error) {
	if len(req.Config.Metrics) == 0 {
		return Analysis{}, fmt.Errorf("canary config: metrics is empty; there is nothing to analyse")
	}
	var pairs []MetricSetPair
	for i, m := range req.Config.Metrics {
		if m.ScopeName == "" {
			return Analysis{}, fmt.Errorf("canary config: metrics[%d] (%q): scopeName is empty", i, m.Name)
		}
		scope, ok := req.Scopes[m.ScopeName]
		if !ok {
			return Analysis{}, fmt.Errorf("canary config: metrics[%d] (%q): scope %q is not in the request", i, m.Name, m.ScopeName)
		}
		control, err := query(ctx, src, m, scope.ControlScope, Control)
		if err != nil {
			return Analysis{}, err
		}
		experiment, err := query(ctx, src, m, scope.ExperimentScope, Experiment)
		if err != nil {
			return Analysis{}, err
		}
		p, err := mixMetric(m.Name, control, experiment, req.Mix)
		if err != nil {
			return Analysis{}, fmt.Errorf("pair metric %q: %w", m.Name, err)
		}
		pairs = append(pairs, p...)
	}
	result, err := Judge(req.Config, req.Thresholds, pairs, req.Judge)
	if err != nil {
		return Analysis{}, fmt.Errorf("judge: %w", err)
	}
	return Analysis{MetricSetPairs: pairs, Result: result}, nil
}

func query(ctx context.Context, src Source, m CanaryMetricConfig, scope CanaryScope, side string) ([]MetricSet, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("query %s of metric %q: %w", side, m.Name, err)
	}
	sets, err := src.QueryMetric(ctx, m, scope)
	if err != nil {
		return nil, fmt.Errorf("query %s of metric %q: %w", side, m.Name, err)
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
