// Package rollup evaluates an aggregation of a range function over a
// selector — sum by (service) (rate(http_requests_total[5m])) — in one
// pass per series, with the results of Prometheus' engine bit for bit.
//
// Prometheus' engine evaluates such a query step by step: for every series
// and every step it copies the samples of the step's window out of a
// buffered iterator (a 5-minute rate at 1-minute steps copies each sample
// five times), calls the function on the copy, keeps every series' points
// for the whole range, and aggregates them afterwards. A Plan reads each
// series once into one buffer, slides the window over it with two indexes,
// and adds each step's value into its group as it goes; nothing per series
// outlives the series. VictoriaMetrics computes its rollups the same way
// (app/vmselect/promql/rollup.go).
//
// The results are the engine's because the operations are: the samples of
// a window are the same (left-open, stale markers dropped), the function's
// arithmetic is Prometheus' own, in the same order (rate adds a window's
// counter resets in order; its extrapolation is copied from
// promql/functions.go), and each group adds its series' values in the
// order the engine does — the order the selector returns the series in —
// with Prometheus' Kahan summation (util/kahansum). What a Plan cannot
// reproduce it does not try: Compile accepts only the forms below, and Eval
// returns ErrFallback when it meets a sample the engine would treat
// differently (a native histogram, a start timestamp), so the caller runs
// the query on the engine instead.
//
// Accepted: sum, avg, count, min, max and group, by or without labels, over
// either a bare vector selector (the engine's lookback rule) or one of
// rate, increase, delta, irate, idelta, sum_over_time, count_over_time,
// min_over_time, max_over_time, last_over_time and present_over_time of a
// matrix selector; parentheses allowed; no offset, @, anchored or smoothed
// modifier. CompileSeries accepts one of those functions without an
// aggregation — rate(http_requests_total{service="checkout"}[5m]) — whose
// plan returns one series per input series with a value, and Matrix makes
// them the engine's result of a range query: names dropped, sorted by
// labels.
package rollup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/parser/posrange"
	"github.com/prometheus/prometheus/schema"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/kahansum"
	"github.com/prometheus/prometheus/util/zeropool"
)

// ErrFallback reports that a Plan met data it does not evaluate exactly as
// the engine does (a native histogram sample, a sample with a start
// timestamp); the caller should run the expression on the engine.
var ErrFallback = errors.New("rollup: data the one-pass evaluation does not cover")

// ErrNotShared reports that EvalShared could not read one select for its
// plans: the store did not serve it in parts (a select merged with other
// stores' series, whose order is not the store's reference order). It is
// an ErrFallback: evaluate the plans apart.
var ErrNotShared = fmt.Errorf("%w: a select not served in parts is not read once for several plans", ErrFallback)

// ErrTooManySamples reports that the groups' points would exceed the
// limit given to Eval; the engine, which holds more, would refuse too.
var ErrTooManySamples = errors.New("rollup: too many samples")

// Plan is an aggregation Eval can compute in one pass per series.
type Plan struct {
	op       parser.ItemType
	grouping []string // sorted, as the engine sorts them
	without  bool
	// dropped are the labels a without drops, sorted: the grouping's and
	// the metric name, type and unit (schema.Metadata.SetToLabels).
	dropped  []string
	fn       string // "" for a bare selector
	rng      int64  // the matrix selector's range, ms
	rngDur   time.Duration
	sel      *parser.VectorSelector
	argPos   posrange.PositionRange // of the function's argument, for annotations
	hintFunc string
	hintBy   bool
	hintGrp  []string
	// perSeries: no aggregation, one output series per input series
	// (CompileSeries).
	perSeries bool
}

// functions are the range functions a Plan evaluates.
var functions = map[string]bool{
	"rate": true, "increase": true, "delta": true, "irate": true, "idelta": true,
	"sum_over_time": true, "count_over_time": true, "min_over_time": true, "max_over_time": true,
	"last_over_time": true, "present_over_time": true,
}

// Compile returns the plan of a, or nil when a is not a form Eval covers.
func Compile(a *parser.AggregateExpr) *Plan {
	switch a.Op {
	case parser.SUM, parser.COUNT, parser.MIN, parser.MAX, parser.GROUP, parser.AVG:
	default:
		return nil
	}
	if a.Param != nil {
		return nil
	}
	p := &Plan{op: a.Op, without: a.Without, grouping: slices.Clone(a.Grouping)}
	slices.Sort(p.grouping)
	if p.without {
		p.dropped = append(slices.Clone(p.grouping), labels.MetricName, model.MetricTypeLabel, model.MetricUnitLabel)
		slices.Sort(p.dropped)
		p.dropped = slices.Compact(p.dropped)
	}
	inner := unparen(a.Expr)
	// The select hints the engine would give (populateSeries): the
	// function or aggregation nearest the selector, and the grouping of an
	// aggregation directly above it.
	switch e := inner.(type) {
	case *parser.VectorSelector:
		p.sel = e
		p.hintFunc = a.Op.String()
		if _, direct := a.Expr.(*parser.VectorSelector); direct {
			p.hintBy, p.hintGrp = !a.Without, a.Grouping
		}
	case *parser.Call:
		if !p.call(e) {
			return nil
		}
	default:
		return nil
	}
	if !plainSelector(p.sel) {
		return nil
	}
	return p
}

// CompileSeries returns the plan of c evaluated without aggregation — a
// range function of a matrix selector, one output series per input
// series — or nil when c is not a form Eval covers. Eval returns the
// series in the select's order with DropName set as the engine sets it;
// Matrix turns them into the engine's result of a query that is c alone.
func CompileSeries(c *parser.Call) *Plan {
	p := &Plan{perSeries: true}
	if !p.call(c) || !plainSelector(p.sel) {
		return nil
	}
	return p
}

// CompileSelector returns the plan of a bare selector of a range query
// evaluated without aggregation — at each step the last sample within the
// lookback delta, as the engine's vectorSelectorSingle, one output series
// per input series, the metric name kept — or nil when vs has an offset or
// an @ modifier.
func CompileSelector(vs *parser.VectorSelector) *Plan {
	if !plainSelector(vs) || vs.Anchored || vs.Smoothed {
		return nil
	}
	return &Plan{perSeries: true, sel: vs}
}

// call sets the function of p to c's, reporting whether it is one Eval
// covers, over a matrix selector.
func (p *Plan) call(e *parser.Call) bool {
	if !functions[e.Func.Name] || len(e.Args) != 1 {
		return false
	}
	ms, ok := e.Args[0].(*parser.MatrixSelector)
	if !ok {
		return false
	}
	vs, ok := ms.VectorSelector.(*parser.VectorSelector)
	if !ok || vs.Anchored || vs.Smoothed {
		return false
	}
	p.fn, p.sel, p.rng, p.rngDur, p.argPos = e.Func.Name, vs, ms.Range.Milliseconds(), ms.Range, ms.PositionRange()
	p.hintFunc = e.Func.Name
	return p.rng > 0
}

// plainSelector reports whether vs has no offset and no @ modifier. An
// offset that is a duration expression (offset (1m + 2s), offset step())
// is only set on the selector when the engine prepares the query.
func plainSelector(vs *parser.VectorSelector) bool {
	return vs.OriginalOffset == 0 && vs.OriginalOffsetExpr == nil && vs.Offset == 0 && vs.Timestamp == nil && vs.StartOrEnd == 0
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

// Range is the evaluation times of a query, in milliseconds: Start, then
// every Interval up to End (an instant query has Start == End).
type Range struct {
	Start, End, Interval int64
	// Lookback is the lookback delta of bare selectors.
	Lookback int64
}

func (r Range) steps() int {
	if r.Interval <= 0 || r.End <= r.Start {
		return 1
	}
	return int((r.End-r.Start)/r.Interval) + 1
}

// Eval evaluates the plan over q at the times of r, returning one series
// per group that has a value at some step, with the points the engine's
// aggregation returns (a group's order is not the engine's; sort if it
// matters). maxSamples bounds the groups' points (0: no bound).
func (p *Plan) Eval(ctx context.Context, q storage.Queryable, r Range, maxSamples int) ([]promql.Series, annotations.Annotations, error) {
	return p.EvalParallel(ctx, q, r, maxSamples, 1, nil)
}

// Matrix is the engine's result of a range query that is a plan without
// aggregation alone (CompileSeries), made from Eval's series: the metric
// name, type and unit dropped where the function drops them (at the end
// of the query, as the engine's delayed name removal does; without it the
// engine drops the same labels at once), sorted by labels. It reports
// false when two series then have the same labels (the engine merges them,
// or refuses the query): run the query on the engine.
func Matrix(series []promql.Series) (promql.Matrix, bool) {
	m := promql.Matrix(series)
	for i := range m {
		if m[i].DropName {
			m[i].Metric = m[i].Metric.DropReserved(schema.IsMetadataLabel)
		}
	}
	sort.Sort(m)
	for i := 1; i < len(m); i++ {
		if labels.Equal(m[i-1].Metric, m[i].Metric) {
			return nil, false
		}
	}
	return m, true
}

// Parts selects runs of consecutive series of a select, which can be read
// concurrently (pkg/storage's WithPart).
type Parts interface {
	// Part returns the context of a select of the series at positions
	// [i*size, (i+1)*size) of what the unsorted select returns, and a
	// function that tells, once the select is made, whether the store
	// selected that part only (served) and whether no series follow it
	// (last).
	Part(ctx context.Context, i, size int) (context.Context, func() (served, last bool))
}

// EvalParallel is Eval reading the series on up to workers goroutines:
// the select is read in parts of consecutive series (parts), each part by
// one goroutine into a buffer of its series' values at each step, and the
// parts are added into the groups in order, so that every group adds the
// same values in the same order as Eval and the engine — the same result,
// bit for bit, whatever the grouping (sharding by the groups' labels
// cannot spread a query with few groups, or one group much larger than the
// others, over the cores). Where the store does not serve parts, it is
// Eval.
func (p *Plan) EvalParallel(ctx context.Context, q storage.Queryable, r Range, maxSamples, workers int, parts Parts) ([]promql.Series, annotations.Annotations, error) {
	res, annos, err := evalPlans(ctx, q, r, maxSamples, workers, parts, []*Plan{p}, [][]*labels.Matcher{nil})
	if err != nil {
		return nil, annos, err
	}
	return res[0], annos, nil
}

// Covers reports whether o can be evaluated over p's select (EvalShared):
// both are aggregations of the same function over the same range, and
// every matcher of p's selector is one of o's, so that o's series are
// those of p's that o's other matchers match, in the same order (a
// select returns its series in the order of their references, whatever
// the matchers). The other matchers may not match an empty value: the
// index selects a series whose label is stored with an empty value
// differently from one without the label (Prometheus' own), which the
// series' labels cannot tell apart.
func (p *Plan) Covers(o *Plan) bool {
	if p.perSeries || o.perSeries || p.fn != o.fn || p.rng != o.rng || p.rngDur != o.rngDur || p.hintFunc != o.hintFunc {
		return false
	}
	extra, ok := extraMatchers(p.sel.LabelMatchers, o.sel.LabelMatchers)
	return ok && !slices.ContainsFunc(extra, func(m *labels.Matcher) bool { return m.Matches("") })
}

// extraMatchers returns the matchers of of that are not in base, and
// whether every matcher of base is in of.
func extraMatchers(base, of []*labels.Matcher) ([]*labels.Matcher, bool) {
	same := func(a, b *labels.Matcher) bool { return a.Type == b.Type && a.Name == b.Name && a.Value == b.Value }
	for _, m := range base {
		if !slices.ContainsFunc(of, func(o *labels.Matcher) bool { return same(m, o) }) {
			return nil, false
		}
	}
	var extra []*labels.Matcher
	for _, o := range of {
		if !slices.ContainsFunc(base, func(m *labels.Matcher) bool { return same(m, o) }) {
			extra = append(extra, o)
		}
	}
	return extra, true
}

// EvalShared evaluates plans[0] and the plans it covers (Covers) in one
// read of plans[0]'s select: each series is read and its values computed
// once, and added into the groups of every plan whose selector matches
// it, in the select's order. Each plan's result is EvalParallel's, bit
// for bit — sum by (service) (rate(x{status=~"5.."}[5m])) / sum by
// (service) (rate(x[5m])) reads the series of the numerator once, not
// twice. The annotations are those of all the plans. The select is read
// in parts (on workers goroutines, one at least): a store that does not
// serve them merges other stores' series into the select by their labels,
// and a narrower select's order could then differ from the wider one's
// filtered; that is ErrNotShared.
func EvalShared(ctx context.Context, q storage.Queryable, r Range, maxSamples, workers int, parts Parts, plans []*Plan) ([][]promql.Series, annotations.Annotations, error) {
	filters := make([][]*labels.Matcher, len(plans))
	for i, o := range plans[1:] {
		if !plans[0].Covers(o) {
			return nil, nil, fmt.Errorf("rollup: %s does not cover %s", plans[0].sel, o.sel)
		}
		filters[i+1], _ = extraMatchers(plans[0].sel.LabelMatchers, o.sel.LabelMatchers)
	}
	return evalPlans(ctx, q, r, maxSamples, workers, parts, plans, filters)
}

// evalPlans evaluates plans over plans[0]'s select, plan i over the series
// that filters[i] match.
func evalPlans(ctx context.Context, q storage.Queryable, r Range, maxSamples, workers int, parts Parts, plans []*Plan, filters [][]*labels.Matcher) ([][]promql.Series, annotations.Annotations, error) {
	p := plans[0]
	if r.Interval <= 0 {
		r.Interval = 1
		r.End = r.Start
	}
	nsteps := r.steps()
	// The time range the engine selects (getTimeRangesForSelector).
	mint := r.Start - (r.Lookback - 1)
	if p.fn != "" {
		mint = r.Start - (p.rng - 1)
	}
	maxt := r.End
	querier, err := q.Querier(mint, maxt)
	if err != nil {
		return nil, nil, err
	}
	defer querier.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt, Step: r.Interval, Func: p.hintFunc, By: p.hintBy, Grouping: p.hintGrp}
	if p.fn != "" {
		hints.Range = p.rng
	}
	rd := reading{p: p, plans: plans, filters: filters, r: r, nsteps: nsteps, mint: mint, maxt: maxt, hints: hints, querier: querier}
	newAggs := func() []*aggregation {
		aggs := make([]*aggregation, len(plans))
		for i, pl := range plans {
			aggs[i] = newAggregation(pl, r, nsteps, maxSamples)
		}
		return aggs
	}
	results := func(aggs []*aggregation) [][]promql.Series {
		res := make([][]promql.Series, len(aggs))
		for i, a := range aggs {
			res[i] = a.result()
		}
		return res
	}
	var annos annotations.Annotations
	shared := len(plans) > 1
	if (workers > 1 || shared) && parts != nil {
		aggs := newAggs()
		served, err := rd.inParts(ctx, aggs, &annos, max(workers, 1), parts)
		if served {
			if err != nil {
				return nil, annos, err
			}
			return results(aggs), annos, nil
		}
	}
	if shared {
		return nil, nil, ErrNotShared
	}
	aggs := newAggs()
	set := querier.Select(ctx, false, hints, p.sel.LabelMatchers...)
	sr := rd.newSeriesReader()
	defer putSeriesReader(sr)
	nSeries := 0
	for set.Next() {
		if nSeries++; nSeries%128 == 0 {
			if err := contextErr(ctx); err != nil {
				return nil, annos, err
			}
		}
		found, err := sr.series(set.At())
		if err != nil {
			return nil, annos, err
		}
		if !found {
			continue
		}
		for i, pl := range plans {
			if !matchAll(filters[i], sr) {
				continue
			}
			sr.annotate(pl, &annos)
			agg := aggs[i]
			if pl.perSeries {
				if err := agg.addSeries(sr.result(), sr.buf.len()); err != nil {
					return nil, annos, err
				}
				continue
			}
			sr.keyOf(pl)
			g, err := agg.group(sr.key, func() labels.Labels { return sr.groupLabels(pl) })
			if err != nil {
				return nil, annos, err
			}
			agg.add(g, sr.out, sr.has)
		}
	}
	if err := set.Err(); err != nil {
		return nil, annos, err
	}
	annos.Merge(set.Warnings())
	if err := contextErr(ctx); err != nil {
		return nil, annos, err
	}
	return results(aggs), annos, nil
}

// matchAll reports whether every matcher of ms matches the labels of the
// last series sr read, as a select
// with them would where none matches an empty value (Covers).
func matchAll(ms []*labels.Matcher, sr *seriesReader) bool {
	for _, m := range ms {
		if !m.Matches(sr.get(m.Name)) {
			return false
		}
	}
	return true
}

// reading is what one evaluation reads: the select of p (plans[0]), for
// each of plans, plan i over the series that filters[i] match.
type reading struct {
	p          *Plan
	plans      []*Plan
	filters    [][]*labels.Matcher
	r          Range
	nsteps     int
	mint, maxt int64
	hints      *storage.SelectHints
	querier    storage.Querier
}

// seriesReader computes one series' values at the steps and its group's
// key; one per goroutine.
type seriesReader struct {
	*reading
	buf samples
	it  chunkenc.Iterator
	out []float64
	has []bool
	key []byte
	lb  *labels.Builder
	// cur is the last series read; metric its labels once built (built):
	// a series that reads a label's value without building its labels
	// (labelValuer: pkg/storage's, whose labels are interned) has them
	// built only for an output series or a new group.
	cur    storage.Series
	metric labels.Labels
	built  bool
}

// labelValuer is a series that reads one label's value without building
// its labels.
type labelValuer interface {
	LabelValue(name string) string
}

// labels are the last series' labels.
func (sr *seriesReader) labels() labels.Labels {
	if !sr.built {
		sr.metric, sr.built = sr.cur.Labels(), true
	}
	return sr.metric
}

// get is the value of the last series' label name ("" if it has none).
func (sr *seriesReader) get(name string) string {
	if !sr.built {
		if lv, ok := sr.cur.(labelValuer); ok {
			return lv.LabelValue(name)
		}
	}
	return sr.labels().Get(name)
}

// readers are series readers with their buffers, reused from query to
// query: a series' samples (two growing slices of 8-byte words) were a
// third of what a one-series rate over 2 h allocated, and with GOGC 30 over
// a large heap the collector's cost is by the byte allocated.
var readers sync.Pool // of *seriesReader

// newSeriesReader returns a series reader of rd, to be given back with
// putSeriesReader once what it read has been recorded.
func (rd *reading) newSeriesReader() *seriesReader {
	sr, _ := readers.Get().(*seriesReader)
	if sr == nil {
		sr = &seriesReader{lb: labels.NewBuilder(labels.EmptyLabels())}
	}
	sr.reading = rd
	if cap(sr.out) < rd.nsteps {
		sr.out, sr.has = make([]float64, rd.nsteps), make([]bool, rd.nsteps)
	}
	sr.out, sr.has = sr.out[:rd.nsteps], sr.has[:rd.nsteps]
	return sr
}

// maxPooledSamples bounds the samples a pooled reader keeps room for (a
// series of a day at 15 s), so that one long read does not stay in memory.
const maxPooledSamples = 8192

func putSeriesReader(sr *seriesReader) {
	if cap(sr.buf.t) > maxPooledSamples || cap(sr.out) > maxPooledSamples {
		return
	}
	sr.reading, sr.it, sr.metric = nil, nil, labels.EmptyLabels()
	sr.cur, sr.built = nil, false
	sr.lb.Reset(labels.EmptyLabels())
	sr.buf.anyReset = false
	readers.Put(sr)
}

// series reads s and computes its values (out, has) and, if it has any,
// its labels (metric); it reports whether it has any.
func (sr *seriesReader) series(s storage.Series) (bool, error) {
	p := sr.p
	var err error
	buf := sr.buf
	buf.t, buf.f = buf.t[:0], buf.f[:0]
	read := false
	if fa, ok := s.(floatsAppender); ok {
		buf.t, buf.f, read, err = fa.AppendFloats(buf.t, buf.f, sr.mint, sr.maxt, p.fn != "")
		if err != nil {
			return false, err
		}
	}
	if !read {
		sr.it = s.Iterator(sr.it)
		if buf, err = p.read(sr.it, buf, sr.mint, sr.maxt); err != nil {
			return false, err
		}
	}
	if p.fn == "rate" || p.fn == "increase" {
		buf.countResets()
	}
	sr.buf = buf
	if !p.compute(buf, sr.r, sr.out, sr.has) {
		return false, nil
	}
	sr.cur, sr.metric, sr.built = s, labels.EmptyLabels(), false
	return true, nil
}

// annotate adds the annotations plan p's function gives the last series.
func (sr *seriesReader) annotate(p *Plan, annos *annotations.Annotations) {
	if p.fn == "rate" || p.fn == "increase" {
		if name := sr.get(labels.MetricName); name != "" && !strings.HasSuffix(name, "_total") &&
			!strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") && !strings.HasSuffix(name, "_bucket") {
			annos.Add(annotations.NewPossibleNonCounterInfo(name, p.argPos))
		}
	}
}

// keyOf sets key to the key of the last series' group in plan p: the
// values of the grouping labels (a label missing and a label with an
// empty value are the same in Prometheus), or, without, the labels of the
// group.
func (sr *seriesReader) keyOf(p *Plan) {
	sr.key = sr.key[:0]
	if p.without {
		// The bytes of the labels the group keeps, without building them.
		sr.key = sr.labels().BytesWithoutLabels(sr.key, p.dropped...)
		return
	}
	for _, name := range p.grouping {
		sr.key = append(sr.key, sr.get(name)...)
		sr.key = append(sr.key, 0xff)
	}
}

// result is the last series' output series, without aggregation: its
// labels, marked for the removal of the metric name as the engine marks
// them (last_over_time keeps it), and its points.
func (sr *seriesReader) result() promql.Series {
	n := 0
	for _, h := range sr.has {
		if h {
			n++
		}
	}
	s := promql.Series{Metric: sr.labels(), DropName: sr.p.fn != "" && sr.p.fn != "last_over_time", Floats: getPoints(n, len(sr.has))}
	for k, h := range sr.has {
		if h {
			s.Floats = append(s.Floats, promql.FPoint{T: sr.r.Start + int64(k)*sr.r.Interval, F: sr.out[k]})
		}
	}
	return s
}

// outPoints are the points of the output series of plans without
// aggregation, given back by Release once the query is done with them, as
// the engine's are at its query's Close: a range query of 1,000 series
// over 120 steps made 1.9 MB of them, and the garbage collector's cost is
// by the byte (GOGC is 30).
var outPoints zeropool.Pool[[]promql.FPoint]

// getPoints returns an empty slice of at least n points, room for nsteps
// if it is new (any series of the query then fits in it when reused).
func getPoints(n, nsteps int) []promql.FPoint {
	if p := outPoints.Get(); cap(p) >= n && p != nil {
		return p[:0]
	}
	return make([]promql.FPoint, 0, max(n, nsteps))
}

// Release gives the points of series back for reuse by later evaluations:
// series is what p's Eval or EvalParallel returned (or Matrix made of it),
// and nothing may use it after. It does nothing for a plan with an
// aggregation, whose groups share one allocation.
func (p *Plan) Release(series []promql.Series) {
	if !p.perSeries {
		return
	}
	for i := range series {
		if cap(series[i].Floats) > 0 {
			outPoints.Put(series[i].Floats[:0])
		}
		series[i].Floats = nil
	}
}

// groupLabels are the labels of the last series' group in plan p
// (generateGroupingLabels).
func (sr *seriesReader) groupLabels(p *Plan) labels.Labels {
	sr.lb.Reset(sr.labels())
	if p.without {
		sr.lb.Del(p.grouping...)
		schema.Metadata{}.SetToLabels(sr.lb)
	} else {
		sr.lb.Keep(p.grouping...)
	}
	return sr.lb.Labels()
}

// aggregation is the groups' values at each step.
type aggregation struct {
	p          *Plan
	r          Range
	nsteps     int
	maxSamples int
	groups     []*group
	byKey      map[string]*group
	// Without aggregation: the output series, their points, and the
	// most samples read for one series.
	series []promql.Series
	points int
	maxBuf int
	// The groups' accumulators are carved out of slabs, given back to
	// slabs by result.
	slabs [][]acc
	free  []acc
}

// slabAccs is the length of a slab of accumulators.
const slabAccs = 1 << 14

// slabs are slabs of accumulators, reused from query to query: a query
// of 1,000 groups over 121 steps allocated 5 MB of them, and the garbage
// collector's cost is by the byte (GOGC is 30).
var slabs sync.Pool // of *[]acc

// newAccs returns a group's accumulators, zeroed.
func (a *aggregation) newAccs() []acc {
	n := a.nsteps
	if n > slabAccs {
		return make([]acc, n)
	}
	if len(a.free) < n {
		var s []acc
		if p, ok := slabs.Get().(*[]acc); ok {
			s = *p
			clear(s)
		} else {
			s = make([]acc, slabAccs)
		}
		a.slabs = append(a.slabs, s)
		a.free = s
	}
	g := a.free[:n:n]
	a.free = a.free[n:]
	return g
}

// addSeries adds an output series of a plan without aggregation, which
// read nbuf samples. The engine holds the points of the series before it
// and the samples of its window: when these could exceed maxSamples it
// is ErrTooManySamples, for the engine to refuse or not.
func (a *aggregation) addSeries(s promql.Series, nbuf int) error {
	a.points += len(s.Floats)
	a.maxBuf = max(a.maxBuf, nbuf)
	if a.maxSamples > 0 && a.points+a.maxBuf > a.maxSamples {
		return ErrTooManySamples
	}
	a.series = append(a.series, s)
	return nil
}

func newAggregation(p *Plan, r Range, nsteps, maxSamples int) *aggregation {
	return &aggregation{p: p, r: r, nsteps: nsteps, maxSamples: maxSamples, byKey: map[string]*group{}}
}

// group returns the group of key, made with the labels of groupLabels if
// it is new.
func (a *aggregation) group(key []byte, groupLabels func() labels.Labels) (*group, error) {
	if g, ok := a.byKey[string(key)]; ok {
		return g, nil
	}
	if a.maxSamples > 0 && (len(a.groups)+1)*a.nsteps > a.maxSamples {
		return nil, ErrTooManySamples
	}
	g := &group{metric: groupLabels(), acc: a.newAccs()}
	// A function of a range drops the metric name (last_over_time keeps
	// it); the group drops it when any of its series does.
	if a.p.fn != "" && a.p.fn != "last_over_time" {
		g.dropName = true
	}
	a.byKey[string(key)] = g
	a.groups = append(a.groups, g)
	return g, nil
}

// add adds a series' values into its group.
func (a *aggregation) add(g *group, out []float64, has []bool) {
	accs := g.acc[:a.nsteps]
	out, has = out[:len(accs)], has[:len(accs)]
	switch a.p.op {
	case parser.SUM:
		for k := range accs {
			if has[k] {
				accs[k].addSum(out[k])
			}
		}
		return
	case parser.AVG:
		for k := range accs {
			if has[k] {
				accs[k].addAvg(out[k])
			}
		}
		return
	}
	for k := range accs {
		if has[k] {
			accs[k].add(a.p.op, out[k])
		}
	}
}

func (a *aggregation) result() []promql.Series {
	p, r := a.p, a.r
	if p.perSeries {
		return a.series
	}
	defer func() {
		for _, g := range a.groups {
			g.acc = nil
		}
		for _, s := range a.slabs {
			slabs.Put(&s)
		}
		a.slabs, a.free = nil, nil
	}()
	// The groups' points in one allocation.
	total := 0
	for _, g := range a.groups {
		for k := range g.acc {
			if g.acc[k].seen {
				total++
			}
		}
	}
	points := make([]promql.FPoint, 0, total)
	res := make([]promql.Series, 0, len(a.groups))
	for _, g := range a.groups {
		s := promql.Series{Metric: g.metric, DropName: g.dropName, Floats: points[len(points):]}
		for k := range a.nsteps {
			ac := &g.acc[k]
			if !ac.seen {
				continue
			}
			v := ac.v
			switch p.op {
			case parser.SUM:
				v += ac.c
			case parser.COUNT:
				v = ac.n
			case parser.AVG:
				if ac.inc {
					v = ac.mean + ac.c
				} else {
					v = ac.v/ac.n + ac.c/ac.n
				}
			}
			s.Floats = append(s.Floats, promql.FPoint{T: r.Start + int64(k)*r.Interval, F: v})
		}
		// Clipped: an append to one group's points must not write over
		// the next group's.
		s.Floats = slices.Clip(s.Floats)
		points = points[:len(points)+len(s.Floats)]
		if len(s.Floats) > 0 {
			res = append(res, s)
		}
	}
	return res
}

// partValues are what one part of the select gives each plan
// (planValues), with the part's annotations.
type partValues struct {
	index  int
	plans  []planValues
	annos  annotations.Annotations
	served bool
	last   bool
	err    error
	done   chan struct{}
}

// planValues are the values of the series of one part that have any for
// one plan, in the order of the select: each series' group (an index into
// keys and labels, the part's groups in the order the part met them), the
// steps it has a value at (a bitmap of words words per series) and those
// values.
type planValues struct {
	keys   []string
	labels []labels.Labels
	byKey  map[string]int32
	series []int32
	has    []uint64
	vals   [][]float64     // in blocks of valBlock
	counts [][]float64     // count and group: per group, its series with a value at each step
	out    []promql.Series // without aggregation: the output series
	maxBuf int             // without aggregation: the most samples read for a series
}

// valBlock is the size of the blocks of a part's values (a variable for
// tests).
var valBlock = 4096

// blocks are the blocks of parts' values, reused from part to part and
// from query to query: made for each query, they were most of its garbage.
var blocks = sync.Pool{New: func() any { b := make([]float64, 0, valBlock); return &b }}

func getBlock() []float64 {
	b := *blocks.Get().(*[]float64)
	if cap(b) != valBlock {
		return make([]float64, 0, valBlock)
	}
	return b[:0]
}

func putBlock(b []float64) {
	if cap(b) == valBlock {
		blocks.Put(&b)
	}
}

// partBytes is about how much a part's values may take: a part has as
// many series as fit. Small parts keep little in memory (a few parts are
// read ahead of the one being added); a part costs a reader and a select.
const partBytes = 512 << 10

// partsAhead is how many parts per worker may be read and not yet added.
// Parts are added in order: with two per worker, a worker that finished
// its parts waited for the part another worker was still reading (slowed by
// a collection, or by another process on its core) — ~250 ms of 2 s in a
// trace of p99_by_service at 100k on a loaded machine. Each part's values
// take about partBytes.
const partsAhead = 6

// counting reports whether p keeps, per group and step, a count of series
// (count and group), which adds up exactly in any order.
func (p *Plan) counting() bool { return p.op == parser.COUNT || p.op == parser.GROUP }

// inParts reads the select in parts on workers goroutines and adds the
// parts into aggs (one per plan) in order. It reports false when the
// store did not serve the parts (nothing was added then).
func (rd *reading) inParts(ctx context.Context, aggs []*aggregation, annos *annotations.Annotations, workers int, parts Parts) (bool, error) {
	size := min(max(partBytes/(len(rd.plans)*(rd.nsteps*8+8)), 64), 4096)
	if slices.ContainsFunc(rd.plans, (*Plan).counting) {
		size = 4096 // a part keeps a count per group and step
	}
	words := (rd.nsteps + 63) / 64
	// Part 0 is selected here, before any worker starts: it tells whether
	// the store serves parts (a select it does not serve is a whole
	// select, of remote stores too), and if it is the only part (a query
	// of fewer series than a part holds: a dashboard's one-series panel)
	// it is read on this goroutine, without workers, their hand-offs and
	// their set-up (inManyParts).
	pctx, check := parts.Part(ctx, 0, size)
	set0 := rd.querier.Select(pctx, false, rd.hints, rd.p.sel.LabelMatchers...)
	served, last := check()
	if !served {
		return false, nil
	}
	if !last {
		return rd.inManyParts(ctx, aggs, annos, workers, parts, set0, size, words)
	}
	pv := &partValues{served: true, last: true}
	sr := rd.newSeriesReader()
	rd.readPart(ctx, sr, pv, set0, nil, size, words, nil)
	putSeriesReader(sr)
	if err := rd.addPart(aggs, annos, pv, words); err != nil {
		return true, err
	}
	return true, contextErr(ctx)
}

// inManyParts reads the parts after part 0 (set0, not the last) on workers
// goroutines, a few parts ahead of the one being added, and adds them in
// order.
func (rd *reading) inManyParts(ctx context.Context, aggs []*aggregation, annos *annotations.Annotations, workers int, parts Parts, set0 storage.SeriesSet, size, words int) (bool, error) {
	var (
		mu      sync.Mutex
		pending = map[int]*partValues{}
		next    atomic.Int64
		stopAt  atomic.Int64 // no part after it is read
		quit    = make(chan struct{})
		tokens  = make(chan struct{}, partsAhead*workers)
		spare   = make(chan *partValues, partsAhead*workers) // added parts' buffers
		wg      sync.WaitGroup
	)
	stopAt.Store(math.MaxInt64)
	for range cap(tokens) {
		tokens <- struct{}{}
	}
	partOf := func(i int) *partValues {
		mu.Lock()
		defer mu.Unlock()
		pv := pending[i]
		if pv == nil {
			pv = &partValues{index: i, done: make(chan struct{})}
			pending[i] = pv
		}
		return pv
	}
	stop := func(i int) {
		for {
			cur := stopAt.Load()
			if int64(i) >= cur || stopAt.CompareAndSwap(cur, int64(i)) {
				return
			}
		}
	}
	// selectPart selects part i, noting in pv whether the store served it
	// and whether it is the last.
	selectPart := func(pv *partValues) storage.SeriesSet {
		pctx, check := parts.Part(ctx, pv.index, size)
		set := rd.querier.Select(pctx, false, rd.hints, rd.p.sel.LabelMatchers...)
		pv.served, pv.last = check()
		if !pv.served || pv.last {
			stop(pv.index)
		}
		return set
	}
	pv0 := partOf(0)
	pv0.served = true
	read := func(sr *seriesReader, pv *partValues) {
		defer close(pv.done)
		var set storage.SeriesSet
		if pv.index == 0 {
			set = set0
		} else {
			if int64(pv.index) > stopAt.Load() {
				return
			}
			set = selectPart(pv)
			if !pv.served {
				return
			}
		}
		var reused []planValues
		select {
		case b := <-spare:
			reused = b.plans
		default:
		}
		rd.readPart(ctx, sr, pv, set, reused, size, words, quit)
		if pv.err != nil {
			stop(pv.index)
		}
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sr := rd.newSeriesReader()
			defer putSeriesReader(sr)
			for {
				select {
				case <-quit:
					return
				case <-tokens:
				}
				i := int(next.Add(1) - 1)
				if int64(i) > stopAt.Load() {
					return
				}
				read(sr, partOf(i))
			}
		}()
	}
	defer func() {
		close(quit)
		wg.Wait()
	}()
	for i := 0; ; i++ {
		pv := partOf(i)
		select {
		case <-pv.done:
		case <-ctx.Done():
			return true, contextErr(ctx)
		}
		mu.Lock()
		delete(pending, i)
		mu.Unlock()
		if !pv.served {
			// The first part tells whether the store serves parts; a
			// later part not served (a store that starts declining
			// mid-query) cannot be added to the earlier ones either.
			return false, nil
		}
		if err := rd.addPart(aggs, annos, pv, words); err != nil {
			return true, err
		}
		if pv.last {
			return true, contextErr(ctx)
		}
		select {
		case spare <- pv:
		default:
		}
		tokens <- struct{}{}
	}
}

// readPart reads the series of set, a part of the select, into pv: each
// plan's values, the annotations, and the error that ended it early.
// reused are an added part's buffers; quit, when closed, stops it
// without an error (nil: never).
func (rd *reading) readPart(ctx context.Context, sr *seriesReader, pv *partValues, set storage.SeriesSet, reused []planValues, size, words int, quit <-chan struct{}) {
	pv.plans = make([]planValues, len(rd.plans))
	for i, p := range rd.plans {
		pl := &pv.plans[i]
		switch {
		case i < len(reused) && reused[i].series != nil:
			pl.series, pl.has = reused[i].series[:0], reused[i].has[:0]
		case p.counting() || p.perSeries:
		default:
			// Sized for the part at once: grown by append, the
			// buffers were copied over and over (a tenth of
			// count_by_name's CPU); the values in blocks, as many as
			// the part needs.
			pl.series = make([]int32, 0, size)
			pl.has = make([]uint64, 0, size*words)
		}
		pl.byKey = map[string]int32{}
	}
	n := 0
	for set.Next() {
		if n++; n%128 == 0 {
			if pv.err = contextErr(ctx); pv.err != nil {
				return
			}
			select {
			case <-quit:
				return
			default:
			}
		}
		found, err := sr.series(set.At())
		if err != nil {
			pv.err = err
			return
		}
		if !found {
			continue
		}
		for i, p := range rd.plans {
			if matchAll(rd.filters[i], sr) {
				sr.annotate(p, &pv.annos)
				rd.record(sr, p, &pv.plans[i], words)
			}
		}
	}
	if pv.err = set.Err(); pv.err != nil {
		return
	}
	pv.annos.Merge(set.Warnings())
	for i := range pv.plans {
		pv.plans[i].byKey = nil
	}
}

// addPart adds the values of a part read into aggs (one per plan), and
// its annotations into annos; or returns the error that ended its read.
func (rd *reading) addPart(aggs []*aggregation, annos *annotations.Annotations, pv *partValues, words int) error {
	if pv.err != nil {
		return pv.err
	}
	annos.Merge(pv.annos)
	for j, p := range rd.plans {
		if err := addValues(p, aggs[j], &pv.plans[j], words); err != nil {
			return err
		}
	}
	return nil
}

// record adds the last series read by sr to pl, plan p's values of
// the part (of words words per series).
func (rd *reading) record(sr *seriesReader, p *Plan, pl *planValues, words int) {
	if p.perSeries {
		pl.out = append(pl.out, sr.result())
		pl.maxBuf = max(pl.maxBuf, sr.buf.len())
		return
	}
	sr.keyOf(p)
	gi, ok := pl.byKey[string(sr.key)]
	if !ok {
		gi = int32(len(pl.keys))
		pl.byKey[string(sr.key)] = gi
		pl.keys = append(pl.keys, string(sr.key))
		pl.labels = append(pl.labels, sr.groupLabels(p))
	}
	if p.counting() {
		// count and group: how many series of the group have a
		// value at each step, which adds up exactly in any order.
		if int(gi) == len(pl.counts) {
			pl.counts = append(pl.counts, make([]float64, rd.nsteps))
		}
		c := pl.counts[gi]
		for k, h := range sr.has {
			if h {
				c[k]++
			}
		}
		return
	}
	pl.series = append(pl.series, gi)
	base := len(pl.has)
	for range words {
		pl.has = append(pl.has, 0)
	}
	if len(sr.has) <= valBlock {
		// All the series' values in the last block (a new one if
		// they may not fit): a tighter loop.
		if len(pl.vals) == 0 || valBlock-len(pl.vals[len(pl.vals)-1]) < len(sr.has) {
			pl.vals = append(pl.vals, getBlock())
		}
		last := &pl.vals[len(pl.vals)-1]
		hw := pl.has[base : base+words]
		vs := *last
		out := sr.out[:len(sr.has)]
		for k, h := range sr.has {
			if h {
				hw[k/64] |= 1 << (k % 64)
				vs = append(vs, out[k])
			}
		}
		*last = vs
		return
	}
	for k, h := range sr.has {
		if h {
			pl.has[base+k/64] |= 1 << (k % 64)
			if len(pl.vals) == 0 || len(pl.vals[len(pl.vals)-1]) == valBlock {
				pl.vals = append(pl.vals, getBlock())
			}
			last := &pl.vals[len(pl.vals)-1]
			*last = append(*last, sr.out[k])
		}
	}
}

// addValues adds plan p's values of a part into agg.
func addValues(p *Plan, agg *aggregation, pl *planValues, words int) error {
	if p.perSeries {
		for _, s := range pl.out {
			if err := agg.addSeries(s, pl.maxBuf); err != nil {
				return err
			}
		}
		pl.out = nil
		return nil
	}
	if p.counting() {
		for gi, c := range pl.counts {
			g, err := agg.group([]byte(pl.keys[gi]), func() labels.Labels { return pl.labels[gi] })
			if err != nil {
				return err
			}
			for k, n := range c {
				if n == 0 {
					continue
				}
				a := &g.acc[k]
				if !a.seen {
					a.seen, a.v, a.n = true, 1, 0
				}
				a.n += n
			}
		}
		return nil
	}
	groups := make([]*group, len(pl.keys))
	sum, avg := p.op == parser.SUM, p.op == parser.AVG
	var vals []float64
	vb := 0
	for si, gi := range pl.series {
		g := groups[gi]
		if g == nil {
			var err error
			if g, err = agg.group([]byte(pl.keys[gi]), func() labels.Labels { return pl.labels[gi] }); err != nil {
				return err
			}
			groups[gi] = g
		}
		// The steps with a value, word by word: a set bit at a time.
		accs := g.acc
		for w, word := range pl.has[si*words : (si+1)*words] {
			if sum || avg {
				if len(vals) == 0 && vb < len(pl.vals) {
					vals = pl.vals[vb]
					vb++
				}
				if bits.OnesCount64(word) <= len(vals) {
					if sum {
						vals = sumWord(accs[w*64:], word, vals)
					} else {
						vals = avgWord(accs[w*64:], word, vals)
					}
					continue
				}
			}
			for ; word != 0; word &= word - 1 {
				if len(vals) == 0 {
					vals = pl.vals[vb]
					vb++
				}
				k := w*64 + bits.TrailingZeros64(word)
				if sum {
					accs[k].addSum(vals[0])
				} else {
					accs[k].add(p.op, vals[0])
				}
				vals = vals[1:]
			}
		}
	}
	for _, blk := range pl.vals {
		putBlock(blk)
	}
	pl.vals = nil
	return nil
}

// samples are a series' samples: their timestamps and values.
type samples struct {
	t []int64
	f []float64
	// resets[i], for rate and increase, counts the counter resets
	// (f[j] < f[j-1]) among samples 1..i: a window without one needs no
	// scan for them. Only if anyReset: a series without a reset (most
	// counters over a query's range) has no counts.
	resets   []int32
	anyReset bool
}

func (s samples) len() int { return len(s.t) }

// slice is the samples [lo, hi) (without resets).
func (s samples) slice(lo, hi int) samples { return samples{t: s.t[lo:hi], f: s.f[lo:hi]} }

// countResets sets s.anyReset and, if there is a reset, s.resets.
func (s *samples) countResets() {
	fs := s.f
	// The first reset, found without writing the counts before it.
	first := 0
	for i := 1; i < len(fs); i++ {
		if fs[i] < fs[i-1] {
			first = i
			break
		}
	}
	s.anyReset = first > 0
	if !s.anyReset {
		return
	}
	if cap(s.resets) < len(fs) {
		s.resets = make([]int32, len(fs), 2*len(fs))
	}
	rs := s.resets[:len(fs)]
	s.resets = rs
	clear(rs[:first])
	var n int32
	for i := first; i < len(fs) && i < len(rs); i++ {
		if fs[i] < fs[i-1] {
			n++
		}
		rs[i] = n
	}
}

// floatsAppender is a series that can append its float samples in a time
// range to a buffer without an iterator (pkg/storage's): ok false (with
// the buffer as it was) when it cannot, and the series is to be iterated.
type floatsAppender interface {
	AppendFloats(ts []int64, fs []float64, mint, maxt int64, dropStale bool) (_ []int64, _ []float64, ok bool, _ error)
}

// read appends the float samples of it in [mint, maxt] to buf. The samples
// of a range function's windows never include a staleness marker (the
// engine drops them); a bare selector needs them, as they end a series.
func (p *Plan) read(it chunkenc.Iterator, buf samples, mint, maxt int64) (samples, error) {
	vt := it.Seek(mint)
	for ; vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			return buf, ErrFallback
		}
		if it.AtST() != 0 {
			return buf, ErrFallback
		}
		t, f := it.At()
		if t < mint {
			continue
		}
		if t > maxt {
			break
		}
		if p.fn != "" && value.IsStaleNaN(f) {
			continue
		}
		buf.t = append(buf.t, t)
		buf.f = append(buf.f, f)
	}
	if err := it.Err(); err != nil {
		return buf, err
	}
	return buf, nil
}

// compute sets out[k] and has[k] to the series' value at each step; it
// reports whether there was any.
func (p *Plan) compute(buf samples, r Range, out []float64, has []bool) bool {
	switch p.fn {
	case "rate":
		return p.computeRate(buf, r, out, has, true, true)
	case "increase":
		return p.computeRate(buf, r, out, has, true, false)
	case "delta":
		return p.computeRate(buf, r, out, has, false, false)
	}
	found := false
	lo, hi := 0, 0
	var w window
	for k := range out {
		ts := r.Start + int64(k)*r.Interval
		has[k] = false
		if p.fn == "" {
			// hi: the first sample after ts.
			hi = w.nextEnd(buf.t, hi, ts)
			// The engine's vectorSelectorSingle: the last sample at or
			// before ts, unless it is older than the lookback delta or a
			// staleness marker.
			if hi == 0 {
				continue
			}
			t, f := buf.t[hi-1], buf.f[hi-1]
			if t <= ts-r.Lookback || value.IsStaleNaN(f) {
				continue
			}
			out[k], has[k], found = f, true, true
			continue
		}
		// lo: the first sample inside (ts - range, ts], hi the first
		// after it.
		lo, hi = w.next(buf.t, lo, hi, ts-p.rng, ts)
		if lo >= hi {
			continue
		}
		v, ok := p.apply(buf.slice(lo, hi))
		if ok {
			out[k], has[k], found = v, true, true
		}
	}
	return found
}

// computeRate is compute for rate, increase and delta: the same windows,
// extrapolatedRate's arithmetic without the window's slices being built.
// What extrapolatedRate derives from the window's times alone (rateTimes)
// is computed again only when they change: on a regular grid of samples and
// steps every window has the same shape, and the same operations on the same
// operands give the same bits.
func (p *Plan) computeRate(buf samples, r Range, out []float64, has []bool, isCounter, isRate bool) bool {
	found := false
	lo, hi := 0, 0
	bt, bf := buf.t, buf.f[:len(buf.t)]
	rngSeconds := p.rngDur.Seconds()
	var shape rateTimes
	var w window
	for k := range out {
		ts := r.Start + int64(k)*r.Interval
		has[k] = false
		lo, hi = w.next(bt, lo, hi, ts-p.rng, ts)
		if hi-lo < 2 {
			// No sample, or a single one without a start timestamp: no
			// result.
			continue
		}
		firstT, lastT := bt[lo], bt[hi-1]
		toStart, toEnd, sampled, n := firstT-(ts-p.rng), ts-lastT, lastT-firstT, hi-lo
		if !shape.is(toStart, toEnd, sampled, n) {
			shape.set(toStart, toEnd, sampled, n, rngSeconds, isRate)
		}
		firstF := bf[lo]
		resultFloat := bf[hi-1] - firstF
		if isCounter && buf.anyReset && buf.resets[hi-1] != buf.resets[lo] {
			for i := lo + 1; i < hi; i++ {
				if bf[i] < bf[i-1] {
					resultFloat += bf[i-1]
				}
			}
		}
		factor := shape.factor
		// A counter's extrapolation to zero can shorten the window's
		// start only if firstF / resultFloat is below durationToStart /
		// sampledInterval; farFromZero tells without a division when it is
		// far above (most counters: a large count, a small increase).
		if isCounter && resultFloat > 0 && firstF >= 0 && !shape.farFromZero(firstF, resultFloat) {
			if durationToZero := shape.sampledInterval * (firstF / resultFloat); durationToZero < shape.durationToStart {
				factor = shape.factorWith(durationToZero, rngSeconds, isRate)
			}
		}
		out[k] = resultFloat * factor
		has[k], found = true, true
	}
	return found
}

// window finds the samples of each step's window, (start, end], as the
// window slides forward: lo the first sample after start, hi the first
// after end. On a regular grid of samples and steps each end moves by the
// same number of samples every step; a guess that it moved as much as the
// step before is checked with two comparisons (the times are sorted), and
// the samples are stepped through one by one only when it is wrong.
type window struct {
	dlo, dhi int // how far lo and hi moved at the step before
}

// next returns lo and hi for the window (start, end], from those of the
// window before (start and end do not decrease).
func (w *window) next(bt []int64, lo, hi int, start, end int64) (int, int) {
	hi = w.nextEnd(bt, hi, end)
	if g := lo + w.dlo; w.dlo > 0 && g < hi && bt[g-1] <= start && bt[g] > start {
		lo = g
	} else {
		l := lo
		for lo < hi && bt[lo] <= start {
			lo++
		}
		w.dlo = lo - l
	}
	return lo, hi
}

// nextEnd is next's hi alone.
func (w *window) nextEnd(bt []int64, hi int, end int64) int {
	if g := hi + w.dhi; w.dhi > 0 && g < len(bt) && bt[g-1] <= end && bt[g] > end {
		return g
	}
	h := hi
	for hi < len(bt) && bt[hi] <= end {
		hi++
	}
	w.dhi = hi - h
	return hi
}

// rateTimes is what Prometheus' extrapolatedRate (promql/functions.go)
// computes from a window's times alone: the window's first sample
// toStart after its start, its last toEnd before its end, n samples over
// sampled milliseconds. durationToStart and durationToEnd are after the
// extrapolation threshold's clamp, factor the rate's factor unless the
// counter's extrapolation to zero shortens durationToStart.
type rateTimes struct {
	toStart, toEnd, sampled int64
	n                       int
	sampledInterval         float64
	durationToStart         float64
	durationToEnd           float64
	factor                  float64
	// zeroRatio is 4 * durationToStart / sampledInterval (farFromZero).
	zeroRatio float64
}

// farFromZero reports whether sampledInterval * (firstF / resultFloat), a
// counter's durationToZero, is certainly not below durationToStart, from
// firstF > resultFloat * zeroRatio (both positive, the product normal):
// then firstF / resultFloat exceeds 4 * durationToStart / sampledInterval
// less a few roundings of at most 2^-53 each, and the rounded
// durationToZero is above 3 * durationToStart, which is not negative. It
// is false, and the caller divides, when it cannot tell (a NaN, an
// infinity, a product near zero).
func (rt *rateTimes) farFromZero(firstF, resultFloat float64) bool {
	p := resultFloat * rt.zeroRatio
	return p > 0x1p-1000 && firstF > p
}

func (rt *rateTimes) is(toStart, toEnd, sampled int64, n int) bool {
	return rt.n == n && rt.toStart == toStart && rt.toEnd == toEnd && rt.sampled == sampled
}

func (rt *rateTimes) set(toStart, toEnd, sampled int64, n int, rngSeconds float64, isRate bool) {
	rt.toStart, rt.toEnd, rt.sampled, rt.n = toStart, toEnd, sampled, n
	durationToStart := float64(toStart) / 1000
	durationToEnd := float64(toEnd) / 1000
	sampledInterval := float64(sampled) / 1000
	averageDurationBetweenSamples := sampledInterval / float64(n-1)
	extrapolationThreshold := averageDurationBetweenSamples * 1.1
	if durationToStart >= extrapolationThreshold {
		durationToStart = averageDurationBetweenSamples / 2
	}
	if durationToEnd >= extrapolationThreshold {
		durationToEnd = averageDurationBetweenSamples / 2
	}
	rt.sampledInterval, rt.durationToStart, rt.durationToEnd = sampledInterval, durationToStart, durationToEnd
	rt.zeroRatio = math.Inf(1) // no shortcut
	if sampledInterval > 0 {
		rt.zeroRatio = 4 * durationToStart / sampledInterval
	}
	rt.factor = rt.factorWith(durationToStart, rngSeconds, isRate)
}

// factorWith is the factor with the window's first sample durationToStart
// seconds after its start.
func (rt *rateTimes) factorWith(durationToStart, rngSeconds float64, isRate bool) float64 {
	factor := 1.0
	if rt.sampledInterval != 0 {
		factor = (rt.sampledInterval + durationToStart + rt.durationToEnd) / rt.sampledInterval
	}
	if isRate {
		factor /= rngSeconds
	}
	return factor
}

// apply is the range function over the (non-empty) window w, but for
// those of computeRate.
func (p *Plan) apply(w samples) (float64, bool) {
	switch p.fn {
	case "irate":
		return instantValue(w, true)
	case "idelta":
		return instantValue(w, false)
	case "sum_over_time":
		var sum, c float64
		for _, f := range w.f {
			sum, c = kahansum.Inc(f, sum, c)
		}
		if math.IsInf(sum, 0) {
			return sum, true
		}
		return sum + c, true
	case "count_over_time":
		return float64(w.len()), true
	case "min_over_time":
		m := w.f[0]
		for _, f := range w.f {
			if f < m || math.IsNaN(m) {
				m = f
			}
		}
		return m, true
	case "max_over_time":
		m := w.f[0]
		for _, f := range w.f {
			if f > m || math.IsNaN(m) {
				m = f
			}
		}
		return m, true
	case "last_over_time":
		return w.f[w.len()-1], true
	case "present_over_time":
		return 1, true
	}
	panic(fmt.Sprintf("rollup: function %q compiled but not evaluated", p.fn))
}

// instantValue is Prometheus' irate/idelta for float samples without start
// timestamps.
func instantValue(w samples, isRate bool) (float64, bool) {
	n := w.len()
	if n < 2 {
		return 0, false
	}
	prevT, prevF, lastT, lastF := w.t[n-2], w.f[n-2], w.t[n-1], w.f[n-1]
	var result float64
	if isRate && lastF < prevF {
		result = lastF
	} else {
		result = lastF - prevF
	}
	sampledInterval := lastT - prevT
	if sampledInterval == 0 {
		return 0, false
	}
	if isRate {
		result /= float64(sampledInterval) / 1000
	}
	return result, true
}

type group struct {
	metric   labels.Labels
	dropName bool
	acc      []acc
}

// acc is one group's aggregation at one step: the engine's
// groupedAggregation for floats.
type acc struct {
	v, c, n float64
	mean    float64 // avg's incremental mean, once the sum would overflow
	inc     bool
	seen    bool
}

// avgWord is sumWord for avg: add's direct mean written out while the
// sum stays finite; add itself for a first value and once the mean is
// incremental.
func avgWord(accs []acc, word uint64, vals []float64) []float64 {
	for ; word != 0; word &= word - 1 {
		a := &accs[bits.TrailingZeros64(word)]
		f := vals[0]
		vals = vals[1:]
		if !a.seen || a.inc {
			a.add(parser.AVG, f)
			continue
		}
		sum, c := float64(a.v), float64(a.c)
		t := float64(sum + f)
		switch {
		case t > math.MaxFloat64 || t < -math.MaxFloat64:
			// The switch to the incremental mean: add's, from the
			// state before this value.
			a.add(parser.AVG, f)
			continue
		case math.Abs(sum) >= math.Abs(f):
			c += (sum - t) + f
		default:
			c += (f - t) + sum
		}
		a.n++
		a.v, a.c = t, float64(c)
	}
	return vals
}

// addSum is add for sum (not inlined: kahansum.Inc's cost, see sumWord).
func (a *acc) addSum(f float64) {
	if !a.seen {
		a.first(f)
		return
	}
	a.v, a.c = kahanInc(f, a.v, a.c)
}

// addAvg is add for avg, the sum's Kahan step not through kahansum.Inc
// while the sum stays finite.
func (a *acc) addAvg(f float64) {
	if !a.seen || a.inc {
		a.add(parser.AVG, f)
		return
	}
	t, c := kahanInc(f, a.v, a.c)
	if t > math.MaxFloat64 || t < -math.MaxFloat64 {
		a.add(parser.AVG, f)
		return
	}
	a.n++
	a.v, a.c = t, c
}

// first sets a to its first value f (group then sets v to 1).
func (a *acc) first(f float64) { a.seen, a.v, a.c, a.n, a.mean = true, f, 0, 1, f }

// kahanInc is kahansum.Inc, the same operations in the same order with
// its explicit float64 conversions (which forbid fusing them with others):
// the same bits.
func kahanInc(inc, sum, c float64) (float64, float64) {
	inc, sum, c = float64(inc), float64(sum), float64(c)
	t := float64(sum + inc)
	switch {
	case t > math.MaxFloat64 || t < -math.MaxFloat64:
		c = 0
	case math.Abs(sum) >= math.Abs(inc):
		c += (sum - t) + inc
	default:
		c += (inc - t) + sum
	}
	return t, float64(c)
}

// sumWord adds, for sum, the values vals (in order) at the steps of the
// set bits of word into accs (the accumulators of the word's 64 steps), and
// returns the values left; vals holds one value for each set bit at least.
// The loop is add's and kahanInc's written out, without a call per value.
func sumWord(accs []acc, word uint64, vals []float64) []float64 {
	for ; word != 0; word &= word - 1 {
		a := &accs[bits.TrailingZeros64(word)]
		f := vals[0]
		vals = vals[1:]
		if !a.seen {
			a.first(f)
			continue
		}
		sum, c := float64(a.v), float64(a.c)
		t := float64(sum + f)
		switch {
		case t > math.MaxFloat64 || t < -math.MaxFloat64:
			c = 0
		case math.Abs(sum) >= math.Abs(f):
			c += (sum - t) + f
		default:
			c += (f - t) + sum
		}
		a.v, a.c = t, float64(c)
	}
	return vals
}

func (a *acc) add(op parser.ItemType, f float64) {
	if !a.seen {
		a.first(f)
		if op == parser.GROUP {
			a.v = 1
		}
		return
	}
	switch op {
	case parser.AVG:
		// Prometheus' direct mean with Kahan summation, switching to the
		// incremental mean when the sum would overflow.
		a.n++
		if !a.inc {
			v, c := kahansum.Inc(f, a.v, a.c)
			if !math.IsInf(v, 0) {
				a.v, a.c = v, c
				return
			}
			a.inc = true
			a.mean = a.v / (a.n - 1)
			a.c /= a.n - 1
		}
		q := (a.n - 1) / a.n
		a.mean, a.c = kahansum.Inc(f/a.n, q*a.mean, q*a.c)
	case parser.SUM:
		a.v, a.c = kahansum.Inc(f, a.v, a.c)
	case parser.MIN:
		if a.v > f || math.IsNaN(a.v) {
			a.v = f
		}
	case parser.MAX:
		if a.v < f || math.IsNaN(a.v) {
			a.v = f
		}
	case parser.COUNT:
		a.n++
	}
}

// contextErr is the engine's error for an ended context (contextDone).
func contextErr(ctx context.Context) error {
	err := ctx.Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return promql.ErrQueryCanceled("expression evaluation")
	case errors.Is(err, context.DeadlineExceeded):
		return promql.ErrQueryTimeout("expression evaluation")
	}
	return err
}

// Matchers is the number of matchers of the plan's selector.
func (p *Plan) Matchers() int { return len(p.sel.LabelMatchers) }
