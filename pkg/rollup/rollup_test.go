package rollup_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/rollup"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

const t0 = int64(1_700_000_000_000)

// fill writes series that exercise what the engine's functions treat
// specially: counter resets, NaN values, staleness markers, gaps longer
// than a window, irregular and duplicate-free intervals, negative values,
// series that start late and end early.
func fill(t *testing.T, db *storage.DB, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 7))
	app := db.AppenderV2(ctx)
	for i := range 60 {
		lset := labels.FromStrings(
			"__name__", []string{"req_total", "mem_bytes", "lat_seconds"}[i%3],
			"svc", fmt.Sprintf("s%d", i%4),
			"inst", fmt.Sprintf("i%d", i),
			"zone", []string{"a", "b", ""}[i%3],
		)
		ts := t0 + rng.Int64N(60_000)
		end := t0 + 3*3600_000 - rng.Int64N(1800_000)
		regular := i%2 == 0 // on the 15 s grid: samples exactly on window and lookback boundaries
		if regular {
			ts = t0 + 15_000*rng.Int64N(4)
		}
		v := rng.Float64() * 100
		var ref promstorage.SeriesRef
		for ts < end {
			f := v
			switch r := rng.IntN(200); {
			case r == 0:
				f = math.NaN()
			case r == 1:
				f = math.Float64frombits(value.StaleNaN)
			case r < 4:
				v = rng.Float64() * 10 // a counter reset
				f = v
			case r == 5:
				ts += 20 * 60_000 // a gap
			case r == 7:
				ts += 5 * 60_000 // exactly the lookback delta
			case r == 6:
				f = -v
			}
			var err error
			ref, err = app.Append(ref, lset, 0, ts, f, nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
			v += rng.Float64() * 5
			if regular {
				ts += 15_000
			} else {
				ts += 5_000 + rng.Int64N(25_000)
			}
		}
	}
	// Integer counters and two-decimal gauges, as most series are: stored,
	// their chunks hold integers v*10^k (decimal chunks), on a grid or
	// with jitter, with a reset or a staleness marker now and then.
	for i := range 12 {
		name := []string{"req_total", "mem_bytes"}[i%2]
		lset := labels.FromStrings("__name__", name, "svc", fmt.Sprintf("s%d", i%4), "inst", fmt.Sprintf("dec%d", i), "zone", []string{"a", "b", ""}[i%3])
		ts := t0 + rng.Int64N(60_000)
		var v float64
		var ref promstorage.SeriesRef
		for ts < t0+3*3600_000 {
			if name == "req_total" {
				v += float64(rng.IntN(100))
				if rng.IntN(300) == 0 {
					v = 0
				}
			} else {
				v = float64(rng.IntN(100000)) / 100
			}
			f := v
			if rng.IntN(400) == 0 {
				f = math.Float64frombits(value.StaleNaN)
			}
			var err error
			ref, err = app.Append(ref, lset, 0, ts, f, nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
			ts += 15_000
			if i%3 == 0 {
				ts += rng.Int64N(300) - 150
			}
		}
	}
	// Values whose sum overflows: avg switches to its incremental mean.
	for i := range 3 {
		lset := labels.FromStrings("__name__", "mem_bytes", "svc", "s1", "inst", fmt.Sprintf("huge%d", i), "zone", "a")
		var ref promstorage.SeriesRef
		for k := int64(0); k < 3*240; k++ {
			var err error
			ref, err = app.Append(ref, lset, 0, t0+k*15_000, math.MaxFloat64/(1.5+float64(i)+rng.Float64()), nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

// TestEvalEqualsEngine compares every accepted form with Prometheus'
// engine over the same store, bit for bit, at many ranges, steps and
// windows (including steps longer than the window and instant queries).
//
// The store is read in each of its states: samples in memory; stored in
// Pebble (decimal chunks, read in bulk); reopened, with more samples in
// open head chunks after the stored ones; and with out-of-order samples
// whose chunks overlap (read through the iterator).
func TestEvalEqualsEngine(t *testing.T) {
	dir := t.TempDir()
	db := storagetest.Open(t, dir)
	defer func() { require.NoError(t, db.Close()) }()
	fill(t, db, 1)
	t.Run("memory", func(t *testing.T) { evalEqualsEngine(t, db) })
	require.NoError(t, db.Flush(context.Background()))
	t.Run("pebble", func(t *testing.T) { evalEqualsEngine(t, db) })
	require.NoError(t, db.Close())
	db = storagetest.Open(t, dir)
	appendMore(t, db)
	t.Run("reopened+head", func(t *testing.T) { evalEqualsEngine(t, db) })
	appendOutOfOrder(t, db)
	t.Run("out-of-order", func(t *testing.T) { evalEqualsEngine(t, db) })
	require.NoError(t, db.Flush(context.Background()))
	t.Run("out-of-order/pebble", func(t *testing.T) { evalEqualsEngine(t, db) })
}

// appendMore adds samples after fill's to a few series, into open head
// chunks.
func appendMore(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	app := db.AppenderV2(ctx)
	for i := range 8 {
		lset := labels.FromStrings("__name__", "req_total", "svc", fmt.Sprintf("s%d", i%4), "inst", fmt.Sprintf("more%d", i), "zone", "a")
		for k := int64(0); k < 50; k++ {
			_, err := app.Append(0, lset, 0, t0+3*3600_000-5*60_000+k*15_000+int64(i), float64(k*k), nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

// appendOutOfOrder writes samples between those appendMore wrote, within
// the out-of-order window.
func appendOutOfOrder(t *testing.T, db *storage.DB) {
	ctx := context.Background()
	app := db.AppenderV2(ctx)
	for i := range 4 {
		lset := labels.FromStrings("__name__", "req_total", "svc", fmt.Sprintf("s%d", i%4), "inst", fmt.Sprintf("more%d", i), "zone", "a")
		for k := int64(30); k < 45; k += 3 {
			_, err := app.Append(0, lset, 0, t0+3*3600_000-5*60_000+k*15_000+int64(i)+7_000, float64(k*k+1), nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

func evalEqualsEngine(t *testing.T, db *storage.DB) {
	opts := levpromql.DefaultOptions()
	engine, err := levpromql.New(opts)
	require.NoError(t, err)
	defer engine.Close()
	ctx := context.Background()
	p := levpromql.NewParser()

	funcs := []string{"rate", "increase", "delta", "irate", "idelta", "sum_over_time", "count_over_time",
		"min_over_time", "max_over_time", "last_over_time", "present_over_time"}
	ops := []string{"sum", "count", "min", "max", "group", "avg"}
	groupings := []string{"by (svc)", "without (inst)", "by (svc, zone)", "by (nothing)", "without (inst, __name__)"}
	windows := []string{"1m", "5m", "90s", "17m"}
	var exprs []string
	for i, f := range funcs {
		for j, op := range ops {
			g := groupings[(i+j)%len(groupings)]
			w := windows[(i+2*j)%len(windows)]
			exprs = append(exprs, fmt.Sprintf("%s %s (%s(req_total[%s]))", op, g, f, w))
			exprs = append(exprs, fmt.Sprintf("%s %s (%s({__name__=~\"mem_bytes|lat_seconds\"}[%s]))", op, g, f, w))
		}
	}
	for _, op := range ops {
		for _, g := range groupings {
			exprs = append(exprs, fmt.Sprintf("%s %s (mem_bytes)", op, g), fmt.Sprintf("%s %s ({svc=~\"s1|s2\"})", op, g))
		}
	}
	exprs = append(exprs, `count by (__name__) ({__name__=~".+"})`, `sum by (svc) ((rate(req_total[5m])))`)

	type window struct {
		start, end, step int64
	}
	windowsQ := []window{
		{t0, t0 + 3*3600_000, 60_000},
		{t0 + 600_000, t0 + 7200_000, 15_000},
		{t0 + 1234, t0 + 3*3600_000, 7*60_000 + 13}, // steps longer than most windows
		{t0 + 3600_000, t0 + 3600_000, 0},           // instant
		{t0 + 3*3600_000 + 60_000, t0 + 3*3600_000 + 60_000, 0},
	}
	// engineAnswer is the engine's answer to qs over w, and its warnings
	// and infos.
	engineAnswer := func(qs string, w window) (promql.Matrix, annotations.Annotations) {
		t.Helper()
		var qry promql.Query
		var err error
		if w.step == 0 {
			qry, err = engine.NewInstantQuery(ctx, db, nil, qs, time.UnixMilli(w.start))
		} else {
			qry, err = engine.NewRangeQuery(ctx, db, nil, qs, time.UnixMilli(w.start), time.UnixMilli(w.end), time.Duration(w.step)*time.Millisecond)
		}
		require.NoError(t, err)
		defer qry.Close()
		res := qry.Exec(ctx)
		require.NoError(t, res.Err, qs)
		return asMatrix(res.Value), res.Warnings
	}
	// rangeOf is the rollup's range of a query window, with the engine's
	// lookback.
	rangeOf := func(w window) rollup.Range {
		return rollup.Range{Start: w.start, End: w.end, Interval: w.step, Lookback: opts.LookbackDelta.Milliseconds()}
	}
	defer rollup.SetValBlock(5)()
	checked := 0
	for _, qs := range exprs {
		expr, err := p.ParseExpr(qs)
		require.NoError(t, err, qs)
		agg, ok := expr.(*parser.AggregateExpr)
		require.True(t, ok, qs)
		plan := rollup.Compile(agg)
		require.NotNil(t, plan, qs)
		for _, w := range windowsQ {
			want, wantAnnos := engineAnswer(qs, w)
			rng := rangeOf(w)
			got, annos, err := plan.Eval(ctx, db, rng, 0)
			require.NoError(t, err, qs)
			// In parts of 3 series on 3 goroutines, their values in
			// blocks of 5: the same groups in the same order, the same
			// values bit for bit.
			sp := &storeParts{size: 3}
			par, parAnnos, err := plan.EvalParallel(ctx, db, rng, 0, 3, sp)
			require.NoError(t, err, qs)
			require.GreaterOrEqual(t, sp.served.Load(), int64(3), "%s: parts served", qs)
			sameOrder(t, qs, got, par)
			require.ElementsMatch(t, keys(annos), keys(parAnnos), qs)
			equal(t, fmt.Sprintf("%s over %+v", qs, w), want, got)
			// The same warnings and infos as the engine's.
			require.ElementsMatch(t, keys(wantAnnos), keys(annos), qs)
			checked++
		}
	}
	// Plans read in one select (EvalShared): each plan's result is its
	// own Eval's and the engine's, in the same order, read whole and in
	// parts; the annotations are those of all the plans.
	for _, grp := range [][]string{
		{`sum by (svc) (rate(req_total[5m]))`, `sum by (svc) (rate(req_total{zone="a"}[5m]))`, `count without (inst) (rate(req_total{svc=~"s1|s2",zone=~"a|b"}[5m]))`},
		{`avg by (zone) (increase({__name__=~"mem_bytes|lat_seconds"}[90s]))`, `max by (svc) (increase({__name__=~"mem_bytes|lat_seconds",zone="a"}[90s]))`, `avg by (zone) (increase({__name__=~"mem_bytes|lat_seconds"}[90s]))`},
		{`min without (inst) (max_over_time(mem_bytes[17m]))`, `group by (svc) (max_over_time(mem_bytes{inst=~"dec.*"}[17m]))`},
		{`sum by (svc) (mem_bytes)`, `sum without (inst) (mem_bytes{zone="b"})`},
	} {
		plans := make([]*rollup.Plan, len(grp))
		for i, qs := range grp {
			expr, err := p.ParseExpr(qs)
			require.NoError(t, err, qs)
			plans[i] = rollup.Compile(expr.(*parser.AggregateExpr))
			require.NotNil(t, plans[i], qs)
			require.True(t, plans[0].Covers(plans[i]), "%s covers %s", grp[0], qs)
		}
		for _, w := range windowsQ {
			rng := rangeOf(w)
			sp := &storeParts{size: 3}
			par, parAnnos, err := rollup.EvalShared(ctx, db, rng, 0, 3, sp, plans)
			require.NoError(t, err, grp[0])
			require.GreaterOrEqual(t, sp.served.Load(), int64(3), "%s: parts served", grp[0])
			// On one goroutine, in one part.
			whole, annos, err := rollup.EvalShared(ctx, db, rng, 0, 1, &storeParts{size: 1 << 20}, plans)
			require.NoError(t, err, grp[0])
			var wantAnnos annotations.Annotations
			for i, qs := range grp {
				own, ownAnnos, err := plans[i].Eval(ctx, db, rng, 0)
				require.NoError(t, err, qs)
				wantAnnos.Merge(ownAnnos)
				what := fmt.Sprintf("%s read with %s over %+v", qs, grp[0], w)
				sameOrder(t, what, own, par[i])
				sameOrder(t, what, own, whole[i])
				want, _ := engineAnswer(qs, w)
				equal(t, what, want, whole[i])
				checked++
			}
			require.ElementsMatch(t, keys(wantAnnos), keys(annos), grp[0])
			require.ElementsMatch(t, keys(wantAnnos), keys(parAnnos), grp[0])
		}
	}
	// Without aggregation: one series per input series, the engine's
	// labels (names dropped but by last_over_time and bare selectors),
	// order and values.
	var perSeries []string
	for i, f := range funcs {
		w := windows[i%len(windows)]
		perSeries = append(perSeries,
			fmt.Sprintf("%s(req_total[%s])", f, w),
			fmt.Sprintf("(%s({__name__=~\"mem_bytes|lat_seconds\",zone!=\"b\"}[%s]))", f, windows[(i+1)%len(windows)]))
	}
	// Bare selectors: the last sample within the lookback delta, staleness
	// markers and NaN included.
	perSeries = append(perSeries, `req_total`, `mem_bytes{inst="i1"}`, `({__name__=~"mem_bytes|lat_seconds",zone!="b"})`, `{svc="s2"}`)
	for _, qs := range perSeries {
		expr, err := p.ParseExpr(qs)
		require.NoError(t, err, qs)
		var plan *rollup.Plan
		switch n := rollup.Unparen(expr).(type) {
		case *parser.Call:
			plan = rollup.CompileSeries(n)
		case *parser.VectorSelector:
			plan = rollup.CompileSelector(n)
		}
		require.NotNil(t, plan, qs)
		for _, w := range windowsQ {
			want, wantAnnos := engineAnswer(qs, w)
			rng := rangeOf(w)
			got, annos, err := plan.Eval(ctx, db, rng, 0)
			require.NoError(t, err, qs)
			sp := &storeParts{size: 3}
			par, parAnnos, err := plan.EvalParallel(ctx, db, rng, 0, 3, sp)
			require.NoError(t, err, qs)
			minParts := int64(3)
			if strings.Contains(qs, `inst="i1"`) {
				minParts = 1 // one series: one part, read without workers
			}
			require.GreaterOrEqual(t, sp.served.Load(), minParts, "%s: parts served", qs)
			sameOrder(t, qs, got, par)
			require.ElementsMatch(t, keys(annos), keys(parAnnos), qs)
			require.ElementsMatch(t, keys(wantAnnos), keys(annos), qs)
			what := fmt.Sprintf("%s over %+v", qs, w)
			if w.step == 0 {
				equal(t, what, want, got)
				checked++
				continue
			}
			// A range query's result: Matrix's, in the engine's order.
			m, ok := rollup.Matrix(got)
			require.True(t, ok, what)
			for i := range m {
				m[i].DropName = false // asMatrix's copy of the engine's has none
			}
			sameOrder(t, what, want, m)
			checked++
		}
	}
	t.Logf("%d queries equal to the engine's", checked)
}

// TestMatrixSameLabels: series that have the same labels once their names
// are dropped are left to the engine (which merges or refuses them).
func TestMatrixSameLabels(t *testing.T) {
	db := storagetest.New(t)
	ctx := context.Background()
	app := db.AppenderV2(ctx)
	for _, name := range []string{"a_total", "b_total"} {
		lset := labels.FromStrings("__name__", name, "x", "1")
		var ref promstorage.SeriesRef
		var err error
		for i := range int64(40) {
			ref, err = app.Append(ref, lset, 0, t0+i*15_000, float64(i), nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	rng := rollup.Range{Start: t0 + 300_000, End: t0 + 540_000, Interval: 60_000, Lookback: 300_000}
	for qs, same := range map[string]bool{
		`rate({__name__=~"a_total|b_total"}[5m])`:           true,
		`last_over_time({__name__=~"a_total|b_total"}[5m])`: false, // keeps the names
		`rate(a_total[5m])`:                                 false,
	} {
		expr, err := levpromql.NewParser().ParseExpr(qs)
		require.NoError(t, err)
		plan := rollup.CompileSeries(expr.(*parser.Call))
		series, _, err := plan.Eval(ctx, db, rng, 0)
		require.NoError(t, err, qs)
		require.NotEmpty(t, series, qs)
		_, ok := rollup.Matrix(series)
		require.Equal(t, !same, ok, qs)
	}
}

// TestEvalFallsBack: a native histogram or a start timestamp is left to
// the engine.
func TestEvalFallsBack(t *testing.T) {
	db := storagetest.New(t)
	ctx := context.Background()
	app := db.AppenderV2(ctx)
	lset := labels.FromStrings("__name__", "x_total", "a", "b")
	var ref promstorage.SeriesRef
	var err error
	for i := range int64(20) {
		ref, err = app.Append(ref, lset, t0+i*15_000-1, t0+i*15_000, float64(i), nil, nil, promstorage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	expr, err := levpromql.NewParser().ParseExpr(`sum by (a) (rate(x_total[5m]))`)
	require.NoError(t, err)
	plan := rollup.Compile(expr.(*parser.AggregateExpr))
	_, _, err = plan.Eval(ctx, db, rollup.Range{Start: t0 + 300_000, End: t0 + 300_000, Lookback: 300_000}, 0)
	if err == nil {
		t.Skip("the store does not keep start timestamps")
	}
	require.ErrorIs(t, err, rollup.ErrFallback)
}

// TestEvalCorruptChunk: a stored chunk cut short is an error naming what
// is wrong, not a panic or a partial answer.
func TestEvalCorruptChunk(t *testing.T) {
	dir := t.TempDir()
	db := storagetest.Open(t, dir)
	fill(t, db, 2)
	require.NoError(t, db.Close())
	// Cut two bytes off every stored decimal chunk (encoding 0x81) big
	// enough to have a Rice or XOR section.
	pdb, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietPebble{}})
	require.NoError(t, err)
	it, err := pdb.NewIter(nil)
	require.NoError(t, err)
	b := pdb.NewBatch()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) > 4 && k[4] == storage.KindChunk && len(v) > 12 && v[0] == 0x81 {
			require.NoError(t, b.Set(slices.Clone(k), slices.Clone(v[:len(v)-2]), nil))
		}
	}
	require.NoError(t, it.Close())
	require.False(t, b.Empty())
	require.NoError(t, b.Commit(pebble.Sync))
	require.NoError(t, pdb.Close())
	db = storagetest.Open(t, dir)
	defer func() { require.NoError(t, db.Close()) }()

	expr, err := levpromql.NewParser().ParseExpr(`sum by (svc) (rate(req_total[5m]))`)
	require.NoError(t, err)
	plan := rollup.Compile(expr.(*parser.AggregateExpr))
	_, _, err = plan.Eval(context.Background(), db, rollup.Range{Start: t0 + 600_000, End: t0 + 3*3600_000, Interval: 60_000}, 0)
	require.ErrorContains(t, err, "decimal chunk")
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)         {}
func (quietPebble) Errorf(string, ...any)        {}
func (quietPebble) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

// TestCovers: a plan covers another only over the same function, range
// and a subset of its matchers.
func TestCovers(t *testing.T) {
	compile := func(qs string) *rollup.Plan {
		expr, err := levpromql.NewParser().ParseExpr(qs)
		require.NoError(t, err, qs)
		p := rollup.Compile(expr.(*parser.AggregateExpr))
		require.NotNil(t, p, qs)
		return p
	}
	base := compile(`sum by (a) (rate(x{b="1"}[5m]))`)
	for qs, covered := range map[string]bool{
		`sum by (a) (rate(x{b="1"}[5m]))`:          true,
		`max (rate(x{c=~"2|3",b="1"}[5m]))`:        true,
		`sum by (a) (rate(x{b="1"}[4m]))`:          false, // range
		`sum by (a) (increase(x{b="1"}[5m]))`:      false, // function
		`sum by (a) (rate(x[5m]))`:                 false, // fewer series
		`sum by (a) (rate(x{b="2"}[5m]))`:          false,
		`sum by (a) (rate(x{b=~"1"}[5m]))`:         false, // another matcher, if the same series
		`sum by (a) (rate({__name__="x"}[5m]))`:    false,
		`sum by (a) (rate(y{b="1"}[5m]))`:          false,
		`sum by (a) (rate(x{b="1",c=~"2|3"}[5m]))`: true,
		`sum by (a) (rate(x{b="1",c=""}[5m]))`:     false, // matches an empty value
		`sum by (a) (rate(x{b="1",c!="2"}[5m]))`:   false,
		`sum by (a) (rate(x{b="1",c=~"2|"}[5m]))`:  false,
		`sum by (a) (rate(x{b="1"}[5m] offset 0))`: true,
	} {
		require.Equal(t, covered, base.Covers(compile(qs)), qs)
	}
	db := storagetest.New(t)
	_, _, err := rollup.EvalShared(context.Background(), db, rollup.Range{Start: t0, End: t0}, 0, 1, &storeParts{size: 3},
		[]*rollup.Plan{base, compile(`sum(rate(x[5m]))`)})
	require.ErrorContains(t, err, "does not cover")
	// A select not served in parts (merged with other stores' series)
	// is not read once for several plans: the caller evaluates them apart.
	fill(t, db, 3)
	rng := rollup.Range{Start: t0 + 600_000, End: t0 + 3*3600_000, Interval: 60_000, Lookback: 300_000}
	plans := []*rollup.Plan{compile(`sum by (svc) (rate(req_total[5m]))`), compile(`sum by (svc) (rate(req_total{zone="a"}[5m]))`)}
	for _, declineAt := range []int{0, 2} {
		_, _, err = rollup.EvalShared(context.Background(), decliner{db, declineAt, &atomic.Int64{}}, rng, 0, 2, &storeParts{size: 3}, plans)
		require.ErrorIs(t, err, rollup.ErrNotShared)
		require.ErrorIs(t, err, rollup.ErrFallback)
	}
	_, _, err = rollup.EvalShared(context.Background(), db, rng, 0, 2, nil, plans)
	require.ErrorIs(t, err, rollup.ErrNotShared)
	res, _, err := rollup.EvalShared(context.Background(), db, rng, 0, 2, &storeParts{size: 3}, plans)
	require.NoError(t, err)
	require.NotEmpty(t, res[1])
}

func TestCompileRefuses(t *testing.T) {
	for _, qs := range []string{
		`sum by (a) (rate(x[5m] offset 1m))`,
		`sum by (a) (rate(x[5m] @ 100))`,
		`sum by (a) (x offset 5m)`,
		`stddev by (a) (rate(x[5m]))`,
		`topk by (a) (2, x)`,
		`sum by (a) (abs(x))`,
		`sum by (a) (rate(x[5m:1m]))`,
		`sum by (a) (quantile_over_time(0.5, x[5m]))`,
		`sum by (a) (x * 2)`,
		`sum by (a) (x offset (1m + 2s))`,
		`sum by (a) (rate(x[5m] offset step()))`,
	} {
		expr, err := levpromql.NewParser().ParseExpr(qs)
		require.NoError(t, err, qs)
		require.Nil(t, rollup.Compile(expr.(*parser.AggregateExpr)), qs)
	}
	for _, qs := range []string{
		`rate(x[5m] offset 1m)`,
		`rate(x[5m] @ 100)`,
		`rate(x[5m:1m])`,
		`quantile_over_time(0.5, x[5m])`,
		`abs(x)`,
		`deriv(x[5m])`,
		`rate(x[5m] anchored)`,
		`rate(x[5m] offset (1m + 2s))`,
	} {
		expr, err := levpromql.NewParser().ParseExpr(qs)
		require.NoError(t, err, qs)
		require.Nil(t, rollup.CompileSeries(expr.(*parser.Call)), qs)
	}
	for _, qs := range []string{`x offset 1m`, `x @ 100`, `x @ start()`, `x offset (1m + 2s)`, `x offset step()`} {
		expr, err := levpromql.NewParser().ParseExpr(qs)
		require.NoError(t, err, qs)
		require.Nil(t, rollup.CompileSelector(expr.(*parser.VectorSelector)), qs)
	}
}

func asMatrix(v parser.Value) promql.Matrix {
	switch v := v.(type) {
	case promql.Matrix:
		out := make(promql.Matrix, len(v))
		for i, s := range v {
			out[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
		}
		return out
	case promql.Vector:
		m := promql.Matrix{}
		for _, s := range v {
			m = append(m, promql.Series{Metric: s.Metric, Floats: []promql.FPoint{{T: s.T, F: s.F}}})
		}
		return m
	}
	panic(fmt.Sprintf("result %T", v))
}

// equal compares the engine's result with a plan's, bit for bit. The
// engine drops a metric name the functions marked for removal at the end
// of the query; Eval leaves that to its caller, so names are compared
// after the same removal.
func equal(t *testing.T, what string, want promql.Matrix, got []promql.Series) {
	t.Helper()
	for i := range got {
		if got[i].DropName {
			got[i].Metric = got[i].Metric.DropMetricName()
		}
	}
	sort.Slice(want, func(i, j int) bool { return labels.Compare(want[i].Metric, want[j].Metric) < 0 })
	sort.Slice(got, func(i, j int) bool { return labels.Compare(got[i].Metric, got[j].Metric) < 0 })
	require.Equal(t, len(want), len(got), "%s: series", what)
	for i := range want {
		require.Equal(t, want[i].Metric.String(), got[i].Metric.String(), what)
		require.Equal(t, len(want[i].Floats), len(got[i].Floats), "%s %s: points", what, want[i].Metric)
		for k := range want[i].Floats {
			w, g := want[i].Floats[k], got[i].Floats[k]
			require.Equal(t, w.T, g.T, "%s %s", what, want[i].Metric)
			require.Equal(t, math.Float64bits(w.F), math.Float64bits(g.F), "%s %s at %d: %v vs %v", what, want[i].Metric, w.T, w.F, g.F)
		}
	}
}

// storeParts cuts selects into parts of size series (whatever size
// EvalParallel asks for, to have many parts of few series) and counts the
// parts the store served.
type storeParts struct {
	size   int
	served atomic.Int64
}

func (s *storeParts) Part(ctx context.Context, i, _ int) (context.Context, func() (bool, bool)) {
	p := &storage.Part{Index: i, Size: s.size}
	return storage.WithPart(ctx, p), func() (bool, bool) {
		if p.Served() {
			s.served.Add(1)
		}
		return p.Served(), p.Last()
	}
}

// sameOrder compares two results of plans, their order included.
func sameOrder(t *testing.T, what string, want, got []promql.Series) {
	t.Helper()
	require.Equal(t, len(want), len(got), "%s: series", what)
	for i := range want {
		require.Equal(t, want[i].Metric.String(), got[i].Metric.String(), what)
		require.Equal(t, want[i].DropName, got[i].DropName, what)
		require.Equal(t, len(want[i].Floats), len(got[i].Floats), "%s %s: points", what, want[i].Metric)
		for k, w := range want[i].Floats {
			g := got[i].Floats[k]
			require.Equal(t, w.T, g.T, "%s %s", what, want[i].Metric)
			require.Equal(t, math.Float64bits(w.F), math.Float64bits(g.F), "%s %s at %d: %v vs %v", what, want[i].Metric, w.T, w.F, g.F)
		}
	}
}

// TestEvalParallelDeclined: where a store merged into the select declines
// the parts, EvalParallel reads the select whole, with Eval's result.
func TestEvalParallelDeclined(t *testing.T) {
	db := storagetest.New(t)
	fill(t, db, 2)
	ctx := context.Background()
	expr, err := levpromql.NewParser().ParseExpr(`sum by (svc) (rate(req_total[5m]))`)
	require.NoError(t, err)
	plan := rollup.Compile(expr.(*parser.AggregateExpr))
	rng := rollup.Range{Start: t0 + 600_000, End: t0 + 3*3600_000, Interval: 60_000, Lookback: 300_000}
	want, _, err := plan.Eval(ctx, db, rng, 0)
	require.NoError(t, err)
	require.NotEmpty(t, want)
	for _, declineAt := range []int{0, 2} {
		sp := &storeParts{size: 3}
		d := decliner{db, declineAt, &atomic.Int64{}}
		got, _, err := plan.EvalParallel(ctx, d, rng, 0, 2, sp)
		require.NoError(t, err)
		sameOrder(t, fmt.Sprintf("declined at part %d", declineAt), want, got)
		if declineAt == 0 {
			// No other part is selected once the first is declined (a
			// merge with remote stores would ask them again).
			require.Equal(t, int64(1), d.parts.Load())
		}
	}
}

// decliner declines the parts from part at on, as a querier merging other
// stores does.
type decliner struct {
	promstorage.Queryable
	at    int
	parts *atomic.Int64 // selects of a part
}

func (d decliner) Querier(mint, maxt int64) (promstorage.Querier, error) {
	q, err := d.Queryable.Querier(mint, maxt)
	return declinerQuerier{q, d}, err
}

type declinerQuerier struct {
	promstorage.Querier
	d decliner
}

func (d declinerQuerier) Select(ctx context.Context, sortSeries bool, hints *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.SeriesSet {
	if p, ok := storage.PartOf(ctx); ok {
		d.d.parts.Add(1)
		if p.Index >= d.d.at {
			storage.DeclinePart(ctx)
		}
	}
	return d.Querier.Select(ctx, sortSeries, hints, ms...)
}

func keys(a map[string]error) []string {
	var out []string
	for _, e := range a {
		out = append(out, strings.TrimSpace(e.Error()))
	}
	return out
}
