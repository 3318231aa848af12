package canaryapi

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/rangequery"
)

// The scope of a native analysis, and the names of its two sides: the
// baseline is the judge's control, the canary its experiment.
const (
	scopeName    = "default"
	sideBaseline = "baseline"
	sideCanary   = "canary"
)

// sideOf names a side of the judge as the native API does.
func sideOf(judgeSide string) string {
	if judgeSide == analysis.Control {
		return sideBaseline
	}
	return sideCanary
}

// source is the analysis.Source of one native analysis: each metric's
// query with the baseline's or the canary's matchers added, run on the
// step's grid.
type source struct {
	queries *rangequery.Runner
	step    time.Duration        // the scopes' Step is in whole seconds; this is the step
	exprs   map[string][2]string // by metric name: the baseline's and the canary's query

	mu       sync.Mutex             // Analyze runs the queries at once
	warnings map[string][2][]string // by metric name: the queries' warnings
}

func (s *source) QueryMetric(ctx context.Context, m analysis.CanaryMetricConfig, sc analysis.CanaryScope) ([]analysis.MetricSet, error) {
	side := 0
	if sc.Scope == sideCanary {
		side = 1
	}
	series, warnings, err := s.queries.Range(ctx, s.exprs[m.Name][side], sc.Start, sc.End, s.step)
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 {
		s.mu.Lock()
		w := s.warnings[m.Name]
		w[side] = warnings
		s.warnings[m.Name] = w
		s.mu.Unlock()
	}
	return gridSets(m.Name, series, sc.Start, sc.End, s.step), nil
}

// allWarnings are the queries' warnings, each once, in the order of the
// metrics and their sides.
func (s *source) allWarnings(metrics []metricPlan) []string {
	var out []string
	for _, m := range metrics {
		for _, ws := range s.warnings[m.name] {
			for _, w := range ws {
				if !slices.Contains(out, w) {
					out = append(out, w)
				}
			}
		}
	}
	return out
}

var _ analysis.Source = (*source)(nil)

// gridSets makes one metric set per series on the grid start, start+step,
// …, end: a step without a sample is NaN (the judge leaves it out). No
// series gives one untagged placeholder without values.
func gridSets(name string, series []rangequery.Series, start, end time.Time, step time.Duration) []analysis.MetricSet {
	n := int64(end.Sub(start)/step) + 1
	startMs, stepMs := start.UnixMilli(), step.Milliseconds()
	set := func(tags map[string]string, values analysis.Series) analysis.MetricSet {
		return analysis.MetricSet{
			Name:            name,
			Tags:            tags,
			StartTimeMillis: startMs,
			EndTimeMillis:   startMs + n*stepMs,
			StepMillis:      stepMs,
			Values:          values,
		}
	}
	if len(series) == 0 {
		return []analysis.MetricSet{set(map[string]string{}, analysis.Series{})}
	}
	out := make([]analysis.MetricSet, 0, len(series))
	for _, ser := range series {
		values := make(analysis.Series, n)
		for k := range values {
			values[k] = math.NaN()
		}
		for k, t := range ser.Times {
			if idx := (t - startMs) / stepMs; idx >= 0 && idx < n {
				values[idx] = ser.Values[k]
			}
		}
		tags := ser.Labels.Map()
		delete(tags, labels.MetricName)
		out = append(out, set(tags, values))
	}
	return out
}
