package resultscache

import (
	"context"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/levitated/levitated/pkg/tenant"
)

// Engine returns inner with its cacheable range queries served through c
// (inner itself if c is nil). Instant queries pass through.
func (c *Cache) Engine(inner promql.QueryEngine) promql.QueryEngine {
	if c == nil {
		return inner
	}
	return &engine{c: c, inner: inner}
}

type bypassKey struct{}

// Bypass returns a context whose range queries run without the cache.
func Bypass(ctx context.Context) context.Context {
	return context.WithValue(ctx, bypassKey{}, true)
}

type engine struct {
	c     *Cache
	inner promql.QueryEngine
}

func (e *engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	return e.inner.NewInstantQuery(ctx, q, opts, qs, ts)
}

// NewRangeQuery makes the query as inner does (so that it fails as inner
// does), and serves it through the cache if it may be cached.
func (e *engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	full, err := e.inner.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	if err != nil {
		return nil, err
	}
	if ctx.Value(bypassKey{}) != nil {
		e.c.count("bypassed", 0, 0)
		return full, nil
	}
	step := interval.Milliseconds()
	if step <= 0 || interval%time.Millisecond != 0 {
		e.c.count("uncacheable", 0, 0)
		return full, nil
	}
	expr, err := e.c.opts.Parser.ParseExpr(qs)
	if err != nil {
		e.c.count("uncacheable", 0, 0)
		return full, nil
	}
	p, why := e.c.analyze(expr)
	if why != "" {
		e.c.count("uncacheable", 0, 0)
		return full, nil
	}
	s, en := start.UnixMilli(), end.UnixMilli()
	if en < s || start.Sub(time.UnixMilli(s)) != 0 || end.Sub(time.UnixMilli(en)) != 0 {
		e.c.count("uncacheable", 0, 0)
		return full, nil
	}
	// The last step is the last on the grid at or before end.
	en = s + (en-s)/step*step
	return &query{
		e: e, full: full, q: q, opts: opts, qs: qs, plan: p,
		start: s, end: en, step: step, interval: interval,
	}, nil
}

// query is a cacheable range query.
type query struct {
	e          *engine
	full       promql.Query // the query as inner made it: run on fallback
	q          storage.Queryable
	opts       promql.QueryOpts
	qs         string
	plan       plan
	start, end int64
	step       int64
	interval   time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
}

func (q *query) Statement() parser.Statement { return q.full.Statement() }
func (q *query) Stats() *stats.Statistics    { return q.full.Stats() }
func (q *query) String() string              { return q.qs }
func (q *query) Close()                      { q.full.Close() }

func (q *query) Cancel() {
	q.mu.Lock()
	if q.cancel != nil {
		q.cancel()
	}
	q.mu.Unlock()
	q.full.Cancel()
}

// key names a query's entry: the same expression at the same steps (step
// and phase of the grid) with the same lookback delta.
func (q *query) key() string {
	var lookback time.Duration
	if q.opts != nil {
		lookback = q.opts.LookbackDelta()
	}
	phase := ((q.start % q.step) + q.step) % q.step
	return strconv.FormatInt(q.step, 10) + "/" + strconv.FormatInt(phase, 10) + "/" + lookback.String() + "/" + q.qs
}

type span struct{ from, to int64 }

func (q *query) Exec(ctx context.Context) *promql.Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q.mu.Lock()
	q.cancel = cancel
	q.mu.Unlock()

	c := q.e.c
	tn := tenant.FromContext(ctx)
	key := q.key()
	now := c.opts.Now().UnixMilli()
	old, v, p := c.lookup(tn, key)

	// The steps the cache holds, and the pieces to evaluate.
	var pieces []span
	u0, u1 := int64(1), int64(0)
	if old != nil {
		u0, u1 = max(v.from, q.start), min(v.to, q.end)
		// Annotations are known per evaluation, not per step: an entry
		// with some serves only queries that use all of it, as it is.
		if len(old.warnings) > 0 && (v.from != old.from || v.to != old.to || u0 != old.from || u1 != old.to) {
			u0, u1 = 1, 0
		}
	}
	if u0 <= u1 {
		if q.start < u0 {
			pieces = append(pieces, span{q.start, u0 - q.step})
		}
		if u1 < q.end {
			pieces = append(pieces, span{u1 + q.step, q.end})
		}
	} else {
		pieces = []span{{q.start, q.end}}
	}
	cachedSteps := int64(0)
	if u0 <= u1 {
		cachedSteps = (u1-u0)/q.step + 1
	}
	evaluatedSteps := (q.end-q.start)/q.step + 1 - cachedSteps

	if len(pieces) == 0 {
		c.finish(tn, p, nil)
		c.count("hit", cachedSteps, 0)
		return &promql.Result{Value: SliceMatrix(old.mat, q.start, q.end), Warnings: mergeAnnotations(nil, old.warnings)}
	}

	// Evaluate the pieces.
	var (
		results  = make([]promql.Matrix, 0, 3)
		warnings annotations.Annotations
		reads    bool
		before   int64
		after    int64
		lo, hi   = int64(math.MaxInt64), int64(math.MinInt64)
	)
	for _, pc := range pieces {
		rec := &recorder{Queryable: q.q}
		qry, err := q.e.inner.NewRangeQuery(ctx, rec, q.opts, q.qs, time.UnixMilli(pc.from), time.UnixMilli(pc.to), q.interval)
		if err != nil {
			return q.fallback(ctx, tn, p)
		}
		res := qry.Exec(ctx)
		mat, ok := res.Value.(promql.Matrix)
		if res.Err != nil || !ok {
			qry.Close()
			return q.fallback(ctx, tn, p)
		}
		results = append(results, CopyMatrix(mat))
		warnings = mergeAnnotations(warnings, res.Warnings)
		qry.Close()
		if rec.any {
			reads = true
			before = max(before, pc.from-rec.mint)
			after = max(after, rec.maxt-pc.to)
			lo, hi = min(lo, rec.mint), max(hi, rec.maxt)
		}
	}

	// Merge in time order.
	var segs []promql.Matrix
	if u0 <= u1 {
		cached := SliceMatrix(old.mat, u0, u1)
		if q.start < u0 {
			segs = append(segs, results[0], cached)
			results = results[1:]
		} else {
			segs = append(segs, cached)
		}
		segs = append(segs, results...)
		warnings = mergeAnnotations(warnings, old.warnings)
		if old.reads {
			reads = true
			before, after = max(before, old.before), max(after, old.after)
			if old.plan.pinned {
				lo, hi = min(lo, old.lo), max(hi, old.hi)
			} else {
				lo, hi = min(lo, subSat(u0, old.before)), max(hi, addSat(u1, old.after))
			}
		}
	} else {
		segs = results
	}
	mat := merge(segs)

	result := "miss"
	if u0 <= u1 {
		result = "partial"
	}
	c.count(result, cachedSteps, evaluatedSteps)

	// Store it. Annotations are kept with it whole (see above).
	ne := &entry{
		tenant: tn, key: key, step: q.step,
		from: q.start, to: q.end, validFrom: q.start, validTo: q.end,
		before: before, after: after, lo: lo, hi: hi, reads: reads,
		plan: q.plan, mat: mat, warnings: warnings, size: sizeOf(mat) + int64(len(key)) + 200,
	}
	if q.plan.readsEvents && reads {
		// Open event windows last until now: keep only the steps that
		// read nothing after now.
		if q.plan.pinned {
			if hi > now {
				ne = nil
			}
		} else {
			ne.validTo = ne.stepAtOrBefore(subSat(now, after))
			if ne.validTo < ne.validFrom {
				ne = nil
			}
		}
	}
	c.finish(tn, p, ne)
	return &promql.Result{Value: mat, Warnings: warnings}
}

func (q *query) fallback(ctx context.Context, tn string, p *pending) *promql.Result {
	q.e.c.finish(tn, p, nil)
	q.e.c.count("fallback", 0, 0)
	return q.full.Exec(ctx)
}

// recorder records the time range of the queriers an evaluation opens.
type recorder struct {
	storage.Queryable
	mu         sync.Mutex
	any        bool
	mint, maxt int64
}

func (r *recorder) Querier(mint, maxt int64) (storage.Querier, error) {
	r.mu.Lock()
	if !r.any {
		r.any, r.mint, r.maxt = true, mint, maxt
	} else {
		r.mint, r.maxt = min(r.mint, mint), max(r.maxt, maxt)
	}
	r.mu.Unlock()
	return r.Queryable.Querier(mint, maxt)
}

// CopyMatrix copies m out of the engine's pools (a result is only valid
// until its query is closed).
func CopyMatrix(m promql.Matrix) promql.Matrix {
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric, DropName: s.DropName}
		if len(s.Floats) > 0 {
			out[i].Floats = append([]promql.FPoint(nil), s.Floats...)
		}
		if len(s.Histograms) > 0 {
			hs := make([]promql.HPoint, len(s.Histograms))
			for j, h := range s.Histograms {
				hs[j] = promql.HPoint{T: h.T, H: h.H.Copy()}
			}
			out[i].Histograms = hs
		}
	}
	return out
}

// SliceMatrix returns the points of m at from..to (ms, inclusive), sharing
// m's points; a series with none there is left out, as the engine leaves
// it out of a query over that range.
func SliceMatrix(m promql.Matrix, from, to int64) promql.Matrix {
	out := make(promql.Matrix, 0, len(m))
	for _, s := range m {
		fs := s.Floats[sort.Search(len(s.Floats), func(i int) bool { return s.Floats[i].T >= from }):]
		fs = fs[:sort.Search(len(fs), func(i int) bool { return fs[i].T > to })]
		hs := s.Histograms[sort.Search(len(s.Histograms), func(i int) bool { return s.Histograms[i].T >= from }):]
		hs = hs[:sort.Search(len(hs), func(i int) bool { return hs[i].T > to })]
		if len(fs) == 0 && len(hs) == 0 {
			continue
		}
		if len(fs) == 0 {
			fs = nil
		}
		if len(hs) == 0 {
			hs = nil
		}
		out = append(out, promql.Series{Metric: s.Metric, Floats: fs, Histograms: hs, DropName: s.DropName})
	}
	return out
}

// merge joins matrices of consecutive, disjoint step ranges, in time order,
// into one matrix sorted by labels, as the engine sorts a range query's.
func merge(segs []promql.Matrix) promql.Matrix {
	if len(segs) == 1 {
		return segs[0]
	}
	type ref struct {
		seg int
		s   *promql.Series
	}
	var all []ref
	for i, m := range segs {
		for j := range m {
			all = append(all, ref{i, &m[j]})
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		if c := labels.Compare(all[i].s.Metric, all[j].s.Metric); c != 0 {
			return c < 0
		}
		return all[i].seg < all[j].seg
	})
	out := make(promql.Matrix, 0, len(all))
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && labels.Equal(all[j].s.Metric, all[i].s.Metric) {
			j++
		}
		s := promql.Series{Metric: all[i].s.Metric, DropName: all[i].s.DropName}
		nf, nh := 0, 0
		for _, r := range all[i:j] {
			nf += len(r.s.Floats)
			nh += len(r.s.Histograms)
		}
		if nf > 0 {
			s.Floats = make([]promql.FPoint, 0, nf)
		}
		if nh > 0 {
			s.Histograms = make([]promql.HPoint, 0, nh)
		}
		for _, r := range all[i:j] {
			s.Floats = append(s.Floats, r.s.Floats...)
			s.Histograms = append(s.Histograms, r.s.Histograms...)
		}
		out = append(out, s)
		i = j
	}
	return out
}

// sizeOf estimates the bytes m holds.
func sizeOf(m promql.Matrix) int64 {
	n := int64(0)
	for _, s := range m {
		n += 64 + int64(s.Metric.ByteSize()) + 16*int64(len(s.Floats))
		for _, h := range s.Histograms {
			n += 16 + 120 + 8*int64(len(h.H.PositiveBuckets)+len(h.H.NegativeBuckets)) + 8*int64(len(h.H.PositiveSpans)+len(h.H.NegativeSpans))
		}
	}
	return n
}
