// Package queryshard evaluates the aggregations of a PromQL query in
// parallel over disjoint shards of the series, with Prometheus' own engine.
//
// A query such as sum by (service) (rate(http_requests_total[5m])) reads
// and computes every series on one goroutine in Prometheus' engine. Its
// aggregation is shardable: the sum over all series is the sum, over N
// disjoint shards of the series, of the per-shard sums. Engine finds such
// aggregations, runs them once per shard concurrently (the storage selects
// a shard through SelectHints.ShardCount/ShardIndex, as Prometheus' TSDB
// and the event store implement it), and evaluates the rest of the query
// over the union of the partial results, served as pre-computed series.
// The technique is Mimir's query sharding (pkg/frontend/querymiddleware
// astmapper), within one process.
//
// An aggregation is sharded only when the result is the same: its
// operator is sum, count, min, max, group, topk or bottomk, it has no
// parameter other than a number, and what it aggregates evaluates each
// series on its own (selectors, range functions over them, per-series
// functions and arithmetic with numbers; no vector matching, no
// subqueries, no nested aggregation). It must also be evaluated at the
// steps of the query: it may not sit under a range function, a subquery,
// an @ modifier or an offset. Anything else runs unchanged.
//
// With rollups (WithRollups), an aggregation pkg/rollup evaluates is not
// sharded: the rollup reads all its series, in parts of consecutive series
// on as many goroutines as there are shards, and adds them in the
// select's order (rollup.EvalParallel); shards of the groups' hash spread
// few groups unevenly. Only when the rollup cannot evaluate it does such an
// aggregation run over shards on the engine. A range query that is a range
// function alone — rate(http_requests_total{service="checkout"}[5m]) — is
// a rollup without aggregation (rollup.CompileSeries): its series are the
// result, with no engine pass over them.
package queryshard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/levitated/levitated/pkg/rollup"
	levstorage "github.com/levitated/levitated/pkg/storage"
)

// embeddedLabel names the pre-computed partial results in the rewritten
// query; a selector on it is answered from memory, not from storage.
const embeddedLabel = "__levitated_shard_result__"

// Engine shards the queries of an inner engine.
type Engine struct {
	inner   promql.QueryEngine
	shards  int
	parser  parser.Parser
	opaque  map[string]bool
	sharded atomic.Int64

	rollups  *RollupOptions
	rolledUp atomic.Int64
	shared   atomic.Int64
	tops     topCache
}

// Sharded returns how many queries ran sharded (or, as a whole, through a
// rollup).
func (e *Engine) Sharded() int64 { return e.sharded.Load() }

// RolledUp returns how many aggregations (or shards of one) pkg/rollup
// evaluated.
func (e *Engine) RolledUp() int64 { return e.rolledUp.Load() }

// SharedReads returns how many times the rollups of two or more
// aggregations of a query read one select (rollup.EvalShared).
func (e *Engine) SharedReads() int64 { return e.shared.Load() }

// RollupOptions are the inner engine's settings a shard evaluated by
// pkg/rollup must apply itself, because it does not run on that engine.
type RollupOptions struct {
	// Timeout is the engine's --query.timeout.
	Timeout time.Duration
	// LookbackDelta is the engine's default lookback delta.
	LookbackDelta time.Duration
	// MaxSamples is the engine's --query.max-samples: a shard whose
	// groups would hold more points runs on the engine, which refuses it.
	MaxSamples int
}

// WithRollups makes e evaluate the aggregations it can with pkg/rollup (one
// pass per series, the engine's results bit for bit) instead of the inner
// engine. A rollup leaves to the engine what it would evaluate differently
// (native histograms, samples with start timestamps).
func (e *Engine) WithRollups(o RollupOptions) *Engine {
	e.rollups = &o
	return e
}

// costLimiter is an inner engine that applies per-query cost limits to
// some queries (pkg/limits.Engine). A rollup does not count the samples it
// reads as the engine does, so a query under such a limit runs on the
// engine.
type costLimiter interface {
	LimitsQuery(ctx context.Context) bool
}

// New returns an engine that runs shardable aggregations over shards
// concurrent shards of inner (shards < 2 turns sharding off). p parses
// queries for the analysis; it must accept what inner accepts. Nothing is
// sharded inside calls to the opaque functions (functions that read their
// vector arguments other than at each step, such as the event-window
// functions).
func New(inner promql.QueryEngine, shards int, p parser.Parser, opaque ...string) *Engine {
	e := &Engine{inner: inner, shards: shards, parser: p, opaque: map[string]bool{}}
	for _, f := range opaque {
		e.opaque[f] = true
	}
	return e
}

func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	return e.newQuery(ctx, q, opts, qs, ts, ts, 0, true)
}

func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	return e.newQuery(ctx, q, opts, qs, start, end, interval, false)
}

func (e *Engine) newQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration, instant bool) (promql.Query, error) {
	delegate := func() (promql.Query, error) {
		if instant {
			return e.inner.NewInstantQuery(ctx, q, opts, qs, start)
		}
		return e.inner.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	}
	if e.shards < 2 && e.rollups == nil {
		return delegate()
	}
	// A range query that is a range function or a selector alone is
	// evaluated by its top plan; its tree and plan are kept by text.
	mayTop := e.rollups != nil && !instant
	var (
		expr   parser.Expr
		top    *rollup.Plan
		cached bool
		err    error
	)
	if mayTop {
		var t topEntry
		t, cached = e.tops.get(qs)
		expr, top = t.statement, t.plan
	}
	if !cached {
		if expr, err = e.parser.ParseExpr(qs); err != nil {
			return delegate() // the inner engine reports it as Prometheus does
		}
		if mayTop {
			switch n := unparen(expr).(type) {
			case *parser.Call:
				top = rollup.CompileSeries(n)
			case *parser.VectorSelector:
				top = rollup.CompileSelector(n)
			}
			if top != nil {
				e.tops.put(qs, topEntry{statement: expr, plan: top})
			}
		}
	}
	var found []foundNode
	statement := expr // a top plan only reads the tree
	if top == nil {
		e.find(expr, false, &found)
		if len(found) == 0 {
			return delegate()
		}
		// The original tree, for Statement: rewrite changes expr.
		if statement, err = e.parser.ParseExpr(qs); err != nil {
			return delegate()
		}
	}
	sq := &shardedQuery{
		engine: e, q: q, opts: opts, qs: qs, start: start, end: end, interval: interval,
		instant: instant, statement: statement, top: top,
	}
	e.sharded.Add(1)
	if top != nil {
		return sq, nil
	}
	for _, f := range found {
		sq.nodes = append(sq.nodes, f.node)
		sq.kinds = append(sq.kinds, f.kind)
		sq.plans = append(sq.plans, f.plan)
	}
	sq.k = selectionOf(expr, found, instant)
	sq.outer = rewrite(expr, sq.nodes).String()
	return sq, nil
}

// nodeKind is how an aggregation found in a query is evaluated.
type nodeKind int

const (
	// sharded: over shards of the series, concurrently.
	sharded nodeKind = iota
	// whole: over all series at once by a rollup (an aggregation that
	// is not shardable, or one under an order-sensitive operator): the
	// engine's result, with its groups in the engine's order.
	whole
	// wholeOrdered: whole, under an operator whose result depends on the
	// order of its input (topk, sort): if the rollup cannot evaluate it,
	// the whole query runs on the engine.
	wholeOrdered
)

type foundNode struct {
	node *parser.AggregateExpr
	kind nodeKind
	plan *rollup.Plan // nil where the engine evaluates it
}

// find collects the outermost aggregations of the tree that are evaluated
// at the query's steps and are shardable, or (with rollups) that a rollup
// evaluates. Below topk, bottomk, limitk, limit_ratio and the sort
// functions nothing is sharded, because which of two equal values they
// keep depends on the order of their input series, and the union of the
// shards' results comes in another order than the unsharded aggregation's;
// a rollup over all series keeps that order.
func (e *Engine) find(n parser.Node, orderSensitive bool, out *[]foundNode) {
	switch n := n.(type) {
	case *parser.AggregateExpr:
		var plan *rollup.Plan
		if e.rollups != nil {
			plan = rollup.Compile(n)
		}
		if !orderSensitive && e.shards >= 2 && shardableAggregation(n) {
			*out = append(*out, foundNode{node: n, kind: sharded, plan: plan})
			return
		}
		if plan != nil && keepsNameSafely(n) {
			kind := whole
			if orderSensitive {
				kind = wholeOrdered
			}
			*out = append(*out, foundNode{node: n, kind: kind, plan: plan})
			return
		}
		switch n.Op {
		case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
			orderSensitive = true
		}
		e.find(n.Expr, orderSensitive, out)
	case *parser.BinaryExpr:
		e.find(n.LHS, orderSensitive, out)
		e.find(n.RHS, orderSensitive, out)
	case *parser.ParenExpr:
		e.find(n.Expr, orderSensitive, out)
	case *parser.UnaryExpr:
		e.find(n.Expr, orderSensitive, out)
	case *parser.Call:
		if e.opaque[n.Func.Name] || strings.HasPrefix(n.Func.Name, "__") {
			return
		}
		switch n.Func.Name {
		case "sort", "sort_desc", "sort_by_label", "sort_by_label_desc":
			orderSensitive = true
		}
		// Only functions of instant vectors evaluate their argument at
		// the query's steps.
		for i, a := range n.Args {
			if i < len(n.Func.ArgTypes) && n.Func.ArgTypes[i] == parser.ValueTypeVector {
				e.find(a, orderSensitive, out)
			}
		}
	}
}

// shardableAggregation reports whether an aggregation can run per shard,
// its shards being made of whole groups: the shard of a series is a hash of
// its grouping labels, so each group is aggregated in one shard, over the
// same series in the same order as without sharding, and its value is
// bit for bit the same. An aggregation without grouping labels has one
// group and is not sharded.
func shardableAggregation(a *parser.AggregateExpr) bool {
	switch a.Op {
	case parser.SUM, parser.COUNT, parser.MIN, parser.MAX, parser.GROUP:
	case parser.TOPK, parser.BOTTOMK:
		if _, ok := unparen(a.Param).(*parser.NumberLiteral); !ok {
			return false
		}
	default:
		return false
	}
	if !a.Without && len(a.Grouping) == 0 {
		return false
	}
	return keepsNameSafely(a) && perSeries(a.Expr)
}

// keepsNameSafely reports whether a's partial results can stand for it in
// the outer query. With delayed __name__ removal, a metric name that an
// inner function marked for removal is still there for the aggregation (by
// (__name__)) and for topk's output in the full query, but already gone
// from a shard's result. Keep the name-keeping cases to bare selectors.
func keepsNameSafely(a *parser.AggregateExpr) bool {
	keepsName := a.Op == parser.TOPK || a.Op == parser.BOTTOMK
	for _, g := range a.Grouping {
		if g == labels.MetricName && !a.Without {
			keepsName = true
		}
	}
	if keepsName {
		if _, ok := unparen(a.Expr).(*parser.VectorSelector); !ok {
			return false
		}
	}
	return true
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

// perSeriesFuncs are the functions whose value for a series depends on
// that series alone (and on numbers).
var perSeriesFuncs = map[string]bool{
	"abs": true, "ceil": true, "floor": true, "exp": true, "ln": true, "log2": true, "log10": true,
	"sqrt": true, "round": true, "sgn": true, "clamp": true, "clamp_min": true, "clamp_max": true,
	"rate": true, "irate": true, "increase": true, "delta": true, "idelta": true, "deriv": true,
	"resets": true, "changes": true, "timestamp": true,
	"avg_over_time": true, "sum_over_time": true, "min_over_time": true, "max_over_time": true,
	"count_over_time": true, "last_over_time": true, "present_over_time": true, "stddev_over_time": true,
	"stdvar_over_time": true, "quantile_over_time": true, "mad_over_time": true,
	"histogram_count": true, "histogram_sum": true, "histogram_avg": true,
}

// perSeries reports whether e computes each output series from one input
// series, so that it can run on a shard of the series.
func perSeries(e parser.Expr) bool {
	hasSelector := false
	ok := true
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if !ok {
			return errors.New("stop")
		}
		switch n := n.(type) {
		case nil: // Inspect's end-of-children marker
		case *parser.VectorSelector:
			if n.Timestamp != nil || n.StartOrEnd != 0 {
				ok = false
			}
			hasSelector = true
		case *parser.MatrixSelector, *parser.NumberLiteral, *parser.ParenExpr, *parser.UnaryExpr:
		case *parser.Call:
			if !perSeriesFuncs[n.Func.Name] {
				ok = false
			}
		case *parser.BinaryExpr:
			// Vector with number only: no matching across series.
			if n.LHS.Type() == parser.ValueTypeVector && n.RHS.Type() == parser.ValueTypeVector {
				ok = false
			}
			if n.Op.IsComparisonOperator() && !n.ReturnBool {
				// Filtering keeps series as they are: fine.
			}
		default:
			ok = false
		}
		return nil
	})
	return ok && hasSelector
}

// rewrite replaces, in expr, each sharded aggregation by the same
// aggregation over the union of the shards' partial results (a sum of
// counts for count), read by an embedded selector; it returns the new
// root.
func rewrite(expr parser.Expr, nodes []*parser.AggregateExpr) parser.Expr {
	repl := map[parser.Expr]parser.Expr{}
	for i, n := range nodes {
		op := n.Op
		if op == parser.COUNT {
			op = parser.SUM
		}
		repl[n] = &parser.AggregateExpr{
			Op:       op,
			Param:    n.Param,
			Grouping: n.Grouping,
			Without:  n.Without,
			Expr: &parser.VectorSelector{LabelMatchers: []*labels.Matcher{
				labels.MustNewMatcher(labels.MatchEqual, embeddedLabel, strconv.Itoa(i)),
			}},
		}
	}
	if r, ok := repl[expr]; ok {
		return r
	}
	var swap func(n parser.Node)
	swap = func(n parser.Node) {
		at := func(e *parser.Expr) {
			if r, ok := repl[*e]; ok {
				*e = r
				return
			}
			swap(*e)
		}
		switch n := n.(type) {
		case *parser.AggregateExpr:
			at(&n.Expr)
		case *parser.BinaryExpr:
			at(&n.LHS)
			at(&n.RHS)
		case *parser.ParenExpr:
			at(&n.Expr)
		case *parser.UnaryExpr:
			at(&n.Expr)
		case *parser.Call:
			for i := range n.Args {
				at(&n.Args[i])
			}
		}
	}
	swap(expr)
	return expr
}

// shardedQuery runs the shards of each sharded aggregation, then the outer
// query over their results.
type shardedQuery struct {
	engine     *Engine
	q          storage.Queryable
	opts       promql.QueryOpts
	qs         string
	start, end time.Time
	interval   time.Duration
	instant    bool
	nodes      []*parser.AggregateExpr
	kinds      []nodeKind     // per node
	plans      []*rollup.Plan // per node; nil where the engine evaluates it
	outer      string
	statement  parser.Expr
	// top is the plan of a range query that is a range function without
	// aggregation (rollup.CompileSeries) or a bare selector
	// (rollup.CompileSelector): the rollup's series are the result, or the
	// query runs on the engine.
	top *rollup.Plan
	// k is the topk or bottomk of a range query that is one over its only
	// node (topk.go).
	k *selection

	mu       sync.Mutex
	cancel   context.CancelFunc
	outerQry promql.Query
	closers  []promql.Query
	// released give back what the rollups' results hold, at Close.
	released []func()
}

func (s *shardedQuery) Statement() parser.Statement {
	st := &parser.EvalStmt{Expr: s.statement, Start: s.start, End: s.end, Interval: s.interval}
	if s.opts != nil {
		st.LookbackDelta = s.opts.LookbackDelta()
	}
	return st
}
func (s *shardedQuery) String() string { return s.qs }

func (s *shardedQuery) Stats() *stats.Statistics {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outerQry != nil {
		return s.outerQry.Stats()
	}
	return noStats
}

// noStats are the statistics of a query evaluated without Prometheus'
// engine (a rollup at the top): no timers and no samples counted, as the
// fresh ones made for each such query were (ten allocations each; the API
// asks every query for them). Shared, so read-only: Prometheus' API and
// stats.NewQueryStats only read them.
var noStats = &stats.Statistics{Timers: stats.NewQueryTimers(), Samples: stats.NewQuerySamples(false)}

func (s *shardedQuery) Cancel() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
}

func (s *shardedQuery) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.closers {
		q.Close()
	}
	s.closers = nil
	for _, f := range s.released {
		f()
	}
	s.released = nil
}

func (s *shardedQuery) newInner(ctx context.Context, q storage.Queryable, qs string) (promql.Query, error) {
	if s.instant {
		return s.engine.inner.NewInstantQuery(ctx, q, s.opts, qs, s.start)
	}
	return s.engine.inner.NewRangeQuery(ctx, q, s.opts, qs, s.start, s.end, s.interval)
}

func (s *shardedQuery) Exec(ctx context.Context) *promql.Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()

	if s.top != nil {
		return s.execTop(ctx)
	}
	n := s.engine.shards
	partial := make([][]promql.Series, len(s.nodes))
	rollupCtx := ctx
	rollupRange, useRollups := s.rollupSetup(ctx)
	if useRollups && s.engine.rollups.Timeout > 0 {
		var cancelRollups context.CancelFunc
		rollupCtx, cancelRollups = context.WithTimeout(ctx, s.engine.rollups.Timeout)
		defer cancelRollups()
	}
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		warnMu   sync.Mutex
		warnings annotations.Annotations
		mu       sync.Mutex
	)
	var unsharded atomic.Bool // a wholeOrdered node the rollup could not evaluate
	fail := func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }
	// viaEngine evaluates node i over q on the inner engine.
	viaEngine := func(i int, q storage.Queryable) {
		qry, err := s.newInner(ctx, q, s.nodes[i].String())
		if err != nil {
			fail(err)
			return
		}
		res := qry.Exec(ctx)
		warnMu.Lock()
		warnings.Merge(res.Warnings)
		warnMu.Unlock()
		if res.Err != nil {
			qry.Close()
			fail(res.Err)
			return
		}
		series, err := asSeries(res.Value)
		if err != nil {
			qry.Close()
			fail(err)
			return
		}
		mu.Lock()
		partial[i] = append(partial[i], series...)
		s.mu.Lock()
		s.closers = append(s.closers, qry)
		s.mu.Unlock()
		mu.Unlock()
	}
	// viaRollup evaluates node i over q with its plan; false when the
	// engine must.
	viaRollup := func(i int, q storage.Queryable) bool {
		plan := s.plans[i]
		if !useRollups || plan == nil {
			return false
		}
		series, annos, err := plan.EvalParallel(rollupCtx, q, rollupRange, s.engine.rollups.MaxSamples, max(n, 1), storeParts{})
		switch {
		case err == nil:
			s.engine.rolledUp.Add(1)
			warnMu.Lock()
			warnings.Merge(annos)
			warnMu.Unlock()
			mu.Lock()
			partial[i] = append(partial[i], series...)
			mu.Unlock()
			return true
		case errors.Is(err, rollup.ErrFallback), errors.Is(err, rollup.ErrTooManySamples):
			return false
		default:
			fail(err)
			return true
		}
	}
	// viaShards evaluates node i over shards of the series on the engine.
	viaShards := func(i int) {
		node := s.nodes[i]
		for shard := 0; shard < n; shard++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				viaEngine(i, shardQueryable{inner: s.q, spec: levstorage.ShardSpec{Labels: node.Grouping, Without: node.Without, Index: uint64(shard), Count: uint64(n)}})
			}()
		}
	}
	// node evaluates node i with its rollup, or else as its kind says.
	node := func(i int) {
		if viaRollup(i, s.q) {
			return
		}
		switch s.kinds[i] {
		case wholeOrdered:
			unsharded.Store(true)
		case whole:
			viaEngine(i, s.q)
		case sharded:
			viaShards(i)
		}
	}
	// viaShared evaluates the nodes of grp with their rollups in one read
	// of the first one's select; one by one where that cannot be done.
	viaShared := func(grp []int) {
		plans := make([]*rollup.Plan, len(grp))
		for k, i := range grp {
			plans[k] = s.plans[i]
		}
		res, annos, err := rollup.EvalShared(rollupCtx, s.q, rollupRange, s.engine.rollups.MaxSamples, max(n, 1), storeParts{}, plans)
		switch {
		case err == nil:
			s.engine.rolledUp.Add(int64(len(grp)))
			s.engine.shared.Add(1)
			warnMu.Lock()
			warnings.Merge(annos)
			warnMu.Unlock()
			mu.Lock()
			for k, i := range grp {
				partial[i] = append(partial[i], res[k]...)
			}
			mu.Unlock()
		case errors.Is(err, rollup.ErrFallback), errors.Is(err, rollup.ErrTooManySamples):
			for _, i := range grp {
				node(i)
			}
		default:
			fail(err)
		}
	}
	shared, inShared := sharedReads(s.plans, useRollups)
	for i := range s.nodes {
		if s.kinds[i] == sharded && (!useRollups || s.plans[i] == nil) {
			viaShards(i)
			continue
		}
		if inShared[i] {
			if grp := shared[i]; grp != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					viaShared(grp)
				}()
			}
			continue
		}
		// A rollup reads all series, in parts on n goroutines, and adds
		// them in the select's order: shards of the groups would spread
		// a query with few groups unevenly (20 services hash 14 to 6
		// over two shards; one metric name holds half of the series).
		wg.Add(1)
		go func() {
			defer wg.Done()
			node(i)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return &promql.Result{Err: firstErr, Warnings: warnings}
	}
	if s.k != nil && !unsharded.Load() && exactMerge(s.nodes, partial) {
		if m, ok := s.k.apply(partial[0], s.steps(), s.engine.rollups); ok {
			return &promql.Result{Value: m, Warnings: warnings}
		}
	}
	if unsharded.Load() || !exactMerge(s.nodes, partial) {
		// Adding the partial results could differ from Prometheus' single
		// pass, or a rollup could not keep the order of an order-sensitive
		// operator's input: run the query unsharded.
		return s.execOuter(ctx, s.q, s.qs)
	}
	eq := embeddedQueryable{inner: s.q, results: partial, steps: s.steps()}
	res := s.execOuter(ctx, eq, s.outer)
	res.Warnings.Merge(warnings)
	return res
}

// sharedReads finds the nodes whose rollups can read one select
// (rollup.Covers): sum by (service) (rate(x{status=~"5.."}[5m])) / sum by
// (service) (rate(x[5m])) reads the series of the numerator once, with the
// denominator's. It returns, by the index of the node whose select is
// read, the nodes evaluated with it (that node first), and which nodes are
// in such a group.
func sharedReads(plans []*rollup.Plan, useRollups bool) (map[int][]int, []bool) {
	in := make([]bool, len(plans))
	if !useRollups {
		return nil, in
	}
	var order []int
	for i, p := range plans {
		if p != nil {
			order = append(order, i)
		}
	}
	if len(order) < 2 {
		return nil, in
	}
	// The selects with fewer matchers first: they cover the others.
	sort.SliceStable(order, func(a, b int) bool { return plans[order[a]].Matchers() < plans[order[b]].Matchers() })
	groups := map[int][]int{}
	for _, i := range order {
		if in[i] {
			continue
		}
		grp := []int{i}
		for _, j := range order {
			if j != i && !in[j] && plans[i].Covers(plans[j]) {
				grp = append(grp, j)
			}
		}
		if len(grp) > 1 {
			for _, j := range grp {
				in[j] = true
			}
			groups[i] = grp
		}
	}
	return groups, in
}

// execOuter evaluates qs over q on the engine as the query's outer query
// (closed with it).
func (s *shardedQuery) execOuter(ctx context.Context, q storage.Queryable, qs string) *promql.Result {
	qry, err := s.newInner(ctx, q, qs)
	if err != nil {
		return &promql.Result{Err: err}
	}
	s.mu.Lock()
	s.outerQry = qry
	s.closers = append(s.closers, qry)
	s.mu.Unlock()
	return qry.Exec(ctx)
}

// execTop evaluates a query that is a range function without aggregation
// with its rollup, or, where the rollup leaves it to the engine, on the
// engine.
func (s *shardedQuery) execTop(ctx context.Context) *promql.Result {
	if r, ok := s.rollupSetup(ctx); ok {
		rctx := ctx
		// The engine's timeout, unless the query's deadline (the
		// tenant's, limits.StartQuery) comes first anyway.
		if t := s.engine.rollups.Timeout; t > 0 {
			if d, ok := ctx.Deadline(); !ok || d.After(time.Now().Add(t)) {
				var cancel context.CancelFunc
				rctx, cancel = context.WithTimeout(ctx, t)
				defer cancel()
			}
		}
		series, annos, err := s.top.EvalParallel(rctx, s.q, r, s.engine.rollups.MaxSamples, max(s.engine.shards, 1), storeParts{})
		switch {
		case err == nil:
			if m, ok := rollup.Matrix(series); ok {
				s.engine.rolledUp.Add(1)
				// The points go back at Close, as the engine's do.
				s.mu.Lock()
				s.released = append(s.released, func() { s.top.Release(m) })
				s.mu.Unlock()
				return &promql.Result{Value: m, Warnings: annos}
			}
			s.top.Release(series)
		case errors.Is(err, rollup.ErrFallback), errors.Is(err, rollup.ErrTooManySamples):
		default:
			return &promql.Result{Err: err, Warnings: annos}
		}
	}
	return s.execOuter(ctx, s.q, s.qs)
}

// rollupSetup reports whether the shards may be evaluated by pkg/rollup,
// and at which times.
func (s *shardedQuery) rollupSetup(ctx context.Context) (rollup.Range, bool) {
	o := s.engine.rollups
	if o == nil || (s.top == nil && !slices.ContainsFunc(s.plans, func(p *rollup.Plan) bool { return p != nil })) {
		return rollup.Range{}, false
	}
	lookback := o.LookbackDelta
	if s.opts != nil {
		if c, ok := s.opts.(promql.QueryCostOpts); ok && (c.MaxSeries() > 0 || c.MaxSamplesRead() > 0 || c.MaxQueryDuration() > 0) {
			return rollup.Range{}, false
		}
		if d := s.opts.LookbackDelta(); d > 0 {
			lookback = d
		}
	}
	if l, ok := s.engine.inner.(costLimiter); ok && l.LimitsQuery(ctx) {
		return rollup.Range{}, false
	}
	r := rollup.Range{Start: s.start.UnixMilli(), End: s.end.UnixMilli(), Lookback: lookback.Milliseconds()}
	if s.instant {
		r.End = r.Start
	} else {
		r.Interval = s.interval.Milliseconds()
	}
	return r, true
}

// exactMerge reports whether the outer aggregations over the partial
// results give what the unsharded query gives: not with native histograms,
// whose counter-reset hints the engine's aggregation of an already
// aggregated histogram sets differently.
func exactMerge(nodes []*parser.AggregateExpr, partial [][]promql.Series) bool {
	for i := range nodes {
		for _, s := range partial[i] {
			if len(s.Histograms) > 0 {
				return false
			}
		}
	}
	return true
}

// steps are the evaluation times of the query, in milliseconds.
func (s *shardedQuery) steps() []int64 {
	start, end := s.start.UnixMilli(), s.end.UnixMilli()
	if s.instant || s.interval <= 0 {
		return []int64{start}
	}
	iv := s.interval.Milliseconds()
	out := make([]int64, 0, (end-start)/iv+1)
	for t := start; t <= end; t += iv {
		out = append(out, t)
	}
	return out
}

// asSeries turns a result into series.
func asSeries(v parser.Value) ([]promql.Series, error) {
	switch v := v.(type) {
	case promql.Matrix:
		return v, nil
	case promql.Vector:
		out := make([]promql.Series, 0, len(v))
		for _, smp := range v {
			s := promql.Series{Metric: smp.Metric, DropName: smp.DropName}
			if smp.H != nil {
				s.Histograms = []promql.HPoint{{T: smp.T, H: smp.H}}
			} else {
				s.Floats = []promql.FPoint{{T: smp.T, F: smp.F}}
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("queryshard: a shard returned %s, want a vector", v.Type())
}

// storeParts selects the parts of a rollup's select from levitated's store
// (levstorage.WithPart).
type storeParts struct{}

func (storeParts) Part(ctx context.Context, i, size int) (context.Context, func() (served, last bool)) {
	p := &levstorage.Part{Index: i, Size: size}
	return levstorage.WithPart(ctx, p), func() (bool, bool) { return p.Served(), p.Last() }
}

// shardQueryable selects one shard of the series of inner: levitated's
// store selects it before reading any chunk (WithShard); every series that
// comes back, from any store, is checked against it.
type shardQueryable struct {
	inner storage.Queryable
	spec  levstorage.ShardSpec
}

func (q shardQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.inner.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return shardQuerier{Querier: inner, spec: q.spec}, nil
}

type shardQuerier struct {
	storage.Querier
	spec levstorage.ShardSpec
}

func (q shardQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	ss := q.Querier.Select(levstorage.WithShard(ctx, q.spec), sortSeries, hints, ms...)
	return &filteredSet{SeriesSet: ss, keep: q.spec.Contains}
}

type filteredSet struct {
	storage.SeriesSet
	keep func(labels.Labels) bool
}

func (f *filteredSet) Next() bool {
	for f.SeriesSet.Next() {
		if f.keep(f.SeriesSet.At().Labels()) {
			return true
		}
	}
	return false
}

// embeddedQueryable answers the embedded selectors of the outer query from
// the shards' results and everything else from inner.
type embeddedQueryable struct {
	inner   storage.Queryable
	results [][]promql.Series
	steps   []int64
}

func (q embeddedQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.inner.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return embeddedQuerier{Querier: inner, q: q}, nil
}

type embeddedQuerier struct {
	storage.Querier
	q embeddedQueryable
}

func (e embeddedQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	for _, m := range ms {
		if m.Name != embeddedLabel {
			continue
		}
		i, err := strconv.Atoi(m.Value)
		if err != nil || i < 0 || i >= len(e.q.results) {
			return storage.ErrSeriesSet(fmt.Errorf("queryshard: no partial result %q", m.Value))
		}
		return embeddedSet(e.q.results[i], e.q.steps, sortSeries)
	}
	return e.Querier.Select(ctx, sortSeries, hints, ms...)
}

// embeddedSet serves partial results as series. A series that has no value
// at a step after having one gets a staleness marker there, so that the
// lookback of the outer query does not carry the earlier value over.
func embeddedSet(res []promql.Series, steps []int64, sortSeries bool) storage.SeriesSet {
	out := make([]storage.Series, 0, len(res))
	for _, s := range res {
		out = append(out, embeddedSeries(s, steps))
	}
	if sortSeries {
		sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	}
	return &seriesSet{series: out, i: -1}
}

type point struct {
	t int64
	f float64
	h *histogram.FloatHistogram
}

func embeddedSeries(s promql.Series, steps []int64) storage.Series {
	pts := make([]point, 0, len(s.Floats)+len(s.Histograms)+1)
	fi, hi := 0, 0
	present := false
	for _, t := range steps {
		switch {
		case fi < len(s.Floats) && s.Floats[fi].T == t:
			pts = append(pts, point{t: t, f: s.Floats[fi].F})
			fi++
			present = true
		case hi < len(s.Histograms) && s.Histograms[hi].T == t:
			pts = append(pts, point{t: t, h: s.Histograms[hi].H})
			hi++
			present = true
		default:
			if present {
				pts = append(pts, point{t: t, f: math.Float64frombits(value.StaleNaN)})
			}
			present = false
		}
	}
	return &storage.SeriesEntry{Lset: s.Metric, SampleIteratorFn: func(it chunkenc.Iterator) chunkenc.Iterator {
		return &pointIterator{pts: pts, i: -1}
	}}
}

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

type pointIterator struct {
	pts []point
	i   int
}

func (it *pointIterator) valueType() chunkenc.ValueType {
	if it.i >= len(it.pts) {
		return chunkenc.ValNone
	}
	if it.pts[it.i].h != nil {
		return chunkenc.ValFloatHistogram
	}
	return chunkenc.ValFloat
}

func (it *pointIterator) Next() chunkenc.ValueType {
	if it.i < len(it.pts) {
		it.i++
	}
	return it.valueType()
}

func (it *pointIterator) Seek(t int64) chunkenc.ValueType {
	if it.i < 0 {
		it.i = 0
	}
	for it.i < len(it.pts) && it.pts[it.i].t < t {
		it.i++
	}
	return it.valueType()
}

func (it *pointIterator) At() (int64, float64) { return it.pts[it.i].t, it.pts[it.i].f }
func (it *pointIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	return it.pts[it.i].t, nil
}

func (it *pointIterator) AtFloatHistogram(fh *histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	p := it.pts[it.i]
	if fh == nil {
		return p.t, p.h.Copy()
	}
	p.h.CopyTo(fh)
	return p.t, fh
}
func (it *pointIterator) AtT() int64  { return it.pts[it.i].t }
func (it *pointIterator) AtST() int64 { return 0 }
func (it *pointIterator) Err() error  { return nil }
