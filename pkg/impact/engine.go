package impact

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/levitated/levitated/pkg/resultscache"
)

// Pacer runs the scheduler's queries behind ingest (*yield.Pacer): it
// starts step when no write request is in flight and rests after it.
type Pacer interface {
	Run(ctx context.Context, step func()) error
}

// Engine is the query engine of the analyses a judgement asks for. It
// wraps the server's engine in two ways:
//
//   - Within one comparison of a judgement (Judge sets its span: the
//     baseline's and the canary's time on one step grid), a range query is
//     evaluated once over the whole span and each query of the same
//     expression on the grid within it is served from that: the baseline's
//     and the canary's sides of a signal are one evaluation, and the
//     analysis again without the signals that lack data runs no query.
//     The value of such a query at each step depends on that step and the
//     data only, so the points are those the query over its own range
//     gives; expressions whose value may depend on the range (@ start() or
//     end(), duration expressions, subqueries, the RangeDependent
//     functions such as the event-window ones) are run as they are.
//   - The scheduler's queries (not the gate's, which someone waits for) run
//     through Pacer, one at a time, behind ingest.
type Engine struct {
	Inner  promql.QueryEngine
	Parser parser.Parser
	// RangeDependent names functions whose value at a step may depend on
	// the query's range (levitated's event-window functions).
	RangeDependent []string
	// Pacer paces the scheduler's queries; nil runs them at once.
	Pacer Pacer

	once    sync.Once
	rangeFn map[string]bool
}

type spanKey struct{}
type backgroundKey struct{}

// span is the time of one comparison: its queries' steps lie on the grid
// from..to every step.
type span struct {
	from, to time.Time
	step     time.Duration

	mu      sync.Mutex
	results map[string]*spanResult
}

type spanResult struct {
	started  bool // guarded by span.mu: a query evaluates it
	done     chan struct{}
	mat      promql.Matrix
	warnings annotations.Annotations
	err      error
}

// withSpan makes the queries made with ctx on the grid from..to every step
// share their evaluations.
func withSpan(ctx context.Context, from, to time.Time, step time.Duration) context.Context {
	return context.WithValue(ctx, spanKey{}, &span{from: from, to: to, step: step, results: map[string]*spanResult{}})
}

// background marks the queries made with ctx as the scheduler's.
func background(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// NewInstantQuery runs as the inner engine does (paced for the
// scheduler).
func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	qry, err := e.Inner.NewInstantQuery(ctx, q, opts, qs, ts)
	if err != nil {
		return nil, err
	}
	return e.paced(ctx, qry), nil
}

// NewRangeQuery serves a query on the grid of ctx's span from one
// evaluation over the whole span.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	sp, _ := ctx.Value(spanKey{}).(*span)
	if sp == nil || interval != sp.step || start.Before(sp.from) || end.After(sp.to) ||
		start.Sub(sp.from)%interval != 0 || !e.widenable(qs) {
		qry, err := e.Inner.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
		if err != nil {
			return nil, err
		}
		return e.paced(ctx, qry), nil
	}
	// The query over the span: made here so that it fails as the query
	// asked for would (both are the same expression).
	full, err := e.Inner.NewRangeQuery(ctx, q, opts, qs, sp.from, sp.to, interval)
	if err != nil {
		return nil, err
	}
	var lookback time.Duration
	if opts != nil {
		lookback = opts.LookbackDelta()
	}
	key := lookback.String() + "/" + qs
	sp.mu.Lock()
	r, ok := sp.results[key]
	if !ok {
		r = &spanResult{done: make(chan struct{})}
		sp.results[key] = r
	}
	sp.mu.Unlock()
	return &spanQuery{e: e, sp: sp, full: full, r: r, qs: qs, start: start.UnixMilli(), end: end.UnixMilli()}, nil
}

// widenable reports whether qs's value at a step does not depend on the
// query's range.
func (e *Engine) widenable(qs string) bool {
	e.once.Do(func() {
		e.rangeFn = map[string]bool{}
		for _, f := range e.RangeDependent {
			e.rangeFn[f] = true
		}
	})
	expr, err := e.Parser.ParseExpr(qs)
	if err != nil {
		return false
	}
	ok := true
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.DurationExpr, *parser.SubqueryExpr:
			ok = false
		case *parser.VectorSelector:
			if n.StartOrEnd != 0 || n.OriginalOffsetExpr != nil {
				ok = false
			}
		case *parser.MatrixSelector:
			if n.RangeExpr != nil {
				ok = false
			}
		case *parser.Call:
			if e.rangeFn[n.Func.Name] {
				ok = false
			}
		}
		if !ok {
			return errStop
		}
		return nil
	})
	return ok
}

var errStop = errors.New("stop")

// paced runs qry through the Pacer when ctx is the scheduler's.
func (e *Engine) paced(ctx context.Context, qry promql.Query) promql.Query {
	if e.Pacer == nil || ctx.Value(backgroundKey{}) == nil {
		return qry
	}
	return &pacedQuery{Query: qry, p: e.Pacer}
}

type pacedQuery struct {
	promql.Query
	p Pacer
}

func (q *pacedQuery) Exec(ctx context.Context) *promql.Result {
	var res *promql.Result
	if err := q.p.Run(ctx, func() { res = q.Query.Exec(ctx) }); err != nil && res == nil {
		return &promql.Result{Err: err}
	}
	return res
}

// spanQuery is a range query served from the evaluation over its span.
type spanQuery struct {
	e          *Engine
	sp         *span
	full       promql.Query // the span's query
	r          *spanResult
	qs         string
	start, end int64
}

func (q *spanQuery) Statement() parser.Statement { return q.full.Statement() }
func (q *spanQuery) Stats() *stats.Statistics    { return q.full.Stats() }
func (q *spanQuery) String() string              { return q.qs }
func (q *spanQuery) Cancel()                     { q.full.Cancel() }
func (q *spanQuery) Close()                      { q.full.Close() }

func (q *spanQuery) Exec(ctx context.Context) *promql.Result {
	q.sp.mu.Lock()
	own := !q.r.started
	q.r.started = true
	q.sp.mu.Unlock()
	if own {
		func() {
			defer close(q.r.done)
			res := q.e.paced(ctx, q.full).Exec(ctx)
			if res.Err != nil {
				q.r.err = res.Err
				return
			}
			m, err := res.Matrix()
			if err != nil {
				q.r.err = err
				return
			}
			q.r.mat, q.r.warnings = resultscache.CopyMatrix(m), res.Warnings
		}()
	}
	select {
	case <-q.r.done:
	case <-ctx.Done():
		return &promql.Result{Err: ctx.Err()}
	}
	if q.r.err != nil {
		return &promql.Result{Err: q.r.err}
	}
	return &promql.Result{Value: resultscache.SliceMatrix(q.r.mat, q.start, q.end), Warnings: q.r.warnings}
}
