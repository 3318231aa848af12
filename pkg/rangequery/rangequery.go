// Package rangequery runs the canary judge's PromQL range queries on
// levitated's own engine, over the queryable of the caller's tenant (from
// the context), and hands back each result series copied out of the
// engine's buffers.
//
// It is the data path shared by the judge's sources (the native analysis
// API's and the Kayenta-compatible API's analysis.Source): it knows the
// engine and Prometheus' storage interfaces, not the judge, the APIs or
// how their metric sets are shaped.
package rangequery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
)

// Runner runs range queries with Engine over Queryable.
type Runner struct {
	Engine    promql.QueryEngine
	Queryable storage.Queryable
}

// Error is a query that the engine refused or failed to run.
type Error struct {
	Query string
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("query %q: %v", e.Query, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Series is one series of a range query: its labels and its samples (at
// steps where it has one).
type Series struct {
	Labels labels.Labels
	Times  []int64 // milliseconds
	Values []float64
}

// Range evaluates expr from start to end every step and returns one series
// per result, copied out of the engine's buffers, and the evaluation's
// warnings as the Prometheus API words them (an endpoint of --query.store
// that did not answer: the series are then of the data that answered). A
// result with native histogram samples is an error: the judge compares
// numbers.
func (r *Runner) Range(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, []string, error) {
	q, err := r.Engine.NewRangeQuery(ctx, r.Queryable, nil, expr, start, end, step)
	if err != nil {
		return nil, nil, &Error{Query: expr, Err: err}
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, nil, &Error{Query: expr, Err: res.Err}
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, nil, &Error{Query: expr, Err: err}
	}
	warnings, _ := res.Warnings.AsStrings(expr, maxWarnings, 0)
	out := make([]Series, 0, len(m))
	for _, s := range m {
		if len(s.Histograms) > 0 {
			return nil, nil, &Error{Query: expr, Err: errors.New("the result has native histogram samples, which the judge cannot compare; reduce them to numbers (histogram_quantile, histogram_avg, histogram_count)")}
		}
		ts := make([]int64, len(s.Floats))
		vs := make([]float64, len(s.Floats))
		for i, f := range s.Floats {
			ts[i], vs[i] = f.T, f.F
		}
		out = append(out, Series{Labels: s.Metric.Copy(), Times: ts, Values: vs})
	}
	return out, warnings, nil
}

// maxWarnings is the most warnings of one query kept (the Prometheus API
// keeps 10).
const maxWarnings = 10

// Check parses expr with the engine's parser and checks that it can be a
// range query from start to end every step, without running it.
func (r *Runner) Check(ctx context.Context, expr string, start, end time.Time, step time.Duration) error {
	q, err := r.Engine.NewRangeQuery(ctx, r.Queryable, nil, expr, start, end, step)
	if err != nil {
		return err
	}
	q.Close()
	return nil
}
