package resultscache_test

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/resultscache"
	"github.com/levitated/levitated/pkg/storage"
)

// fixture is a real store (pkg/storage in a temp dir) that tells the cache
// of its changes, and Prometheus' engine, evaluated with and without the
// cache.
type fixture struct {
	db     *storage.DB
	cache  *resultscache.Cache
	plain  promql.QueryEngine
	cached promql.QueryEngine
}

func newFixture(t testing.TB, maxBytes int64) *fixture {
	t.Helper()
	c := resultscache.New(resultscache.Options{MaxBytes: maxBytes, Parser: levpromql.NewParser(), EventFunctions: levpromql.EventFunctions()})
	o := storage.DefaultOptions()
	o.OnChange = c.SamplesChanged
	o.OutOfOrderWindow = 3 * time.Hour
	db, err := storage.Open(t.TempDir(), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	eng, err := levpromql.New(levpromql.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	return &fixture{db: db, cache: c, plain: eng, cached: c.Engine(eng)}
}

// series is the data: counters, a gauge that sometimes has gaps, a second
// counter name with the same labels (for or-merges after name removal) and
// native histograms.
func (f *fixture) write(t testing.TB, from, to, every int64, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	app := f.db.Appender(context.Background())
	n := 0
	for ts := from; ts <= to; ts += every {
		for i := range 4 {
			inst := fmt.Sprint("i", i)
			v := float64(ts/1000) + float64(i)*7 + rng.Float64()
			_, err := app.Append(0, labels.FromStrings("__name__", "req_total", "job", "api", "instance", inst), ts, v)
			require.NoError(t, err)
			if ts%(every*40) < every*20 {
				_, err = app.Append(0, labels.FromStrings("__name__", "gauge", "job", "api", "instance", inst), ts, rng.NormFloat64())
				require.NoError(t, err)
			}
			if ts/(every*100)%2 == int64(i%2) {
				_, err = app.Append(0, labels.FromStrings("__name__", "other_total", "job", "api", "instance", inst), ts, v*2)
				require.NoError(t, err)
			}
			h := &histogram.Histogram{Count: uint64(ts / 1000), Sum: float64(ts/1000) * 0.3, Schema: 0,
				PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(ts / 2000), 0}, ZeroThreshold: 0.001}
			h.Count = uint64(2 * (ts / 2000))
			_, err = app.AppendHistogram(0, labels.FromStrings("__name__", "lat", "job", "api", "instance", inst), ts, h, nil)
			require.NoError(t, err)
			n++
		}
		if n > 2000 {
			require.NoError(t, app.Commit())
			app = f.db.Appender(context.Background())
			n = 0
		}
	}
	require.NoError(t, app.Commit())
}

var queries = []string{
	`req_total`,
	`rate(req_total[5m])`,
	`sum by (job) (rate(req_total[5m]))`,
	`sum(rate(req_total[1m])) / sum(rate(req_total[5m]))`,
	`topk(2, rate(req_total[2m]))`,
	`max_over_time(gauge[3m])`,
	`gauge offset 10m`,
	`gauge offset -5m`,
	`rate(req_total[5m] offset 7m)`,
	`timestamp(gauge)`,
	`time() - timestamp(gauge)`,
	`absent(gauge{instance="i0"})`,
	`rate(req_total[5m]) or rate(other_total[5m])`,
	`label_replace(rate(req_total[5m]), "x", "$1", "instance", "i(.)")`,
	`count_values("v", round(gauge))`,
	`histogram_quantile(0.9, rate(lat[5m]))`,
	`rate(lat[5m])`,
	`gauge @ ` + "%d",
	`deriv(gauge[10m]) * on(instance) group_left rate(req_total[5m])`,
	`vector(1)`,
	`rate(gauge[5m])`, // "might not be a counter" at the steps where gauge has samples
	`histogram_quantile(0.5, gauge)`,
	`time()`,
	// Not cached (evaluated as they are):
	`max_over_time(rate(req_total[1m])[10m:1m])`,
	`gauge @ end()`,
	`rate(req_total[step()])`,
}

// equalMatrix requires a and b to be bit for bit the same.
func equalMatrix(t testing.TB, a, b promql.Matrix, msg string) {
	t.Helper()
	require.Equal(t, len(a), len(b), "%s: series", msg)
	for i := range a {
		require.True(t, labels.Equal(a[i].Metric, b[i].Metric), "%s: series %d: %s vs %s", msg, i, a[i].Metric, b[i].Metric)
		if len(a[i].Floats) != len(b[i].Floats) {
			t.Logf("want %v", a[i].Floats)
			t.Logf("got  %v", b[i].Floats)
		}
		require.Equal(t, len(a[i].Floats), len(b[i].Floats), "%s: %s: float points", msg, a[i].Metric)
		for j := range a[i].Floats {
			x, y := a[i].Floats[j], b[i].Floats[j]
			require.True(t, x.T == y.T && math.Float64bits(x.F) == math.Float64bits(y.F), "%s: %s: point %d: %v vs %v", msg, a[i].Metric, j, x, y)
		}
		require.Equal(t, len(a[i].Histograms), len(b[i].Histograms), "%s: %s: histogram points", msg, a[i].Metric)
		for j := range a[i].Histograms {
			x, y := a[i].Histograms[j], b[i].Histograms[j]
			require.True(t, x.T == y.T && x.H.Equals(y.H), "%s: %s: histogram %d", msg, a[i].Metric, j)
		}
	}
}

func (f *fixture) run(t testing.TB, eng promql.QueryEngine, q string, start, end int64, step time.Duration) (promql.Matrix, error) {
	t.Helper()
	m, _, err := f.runW(t, eng, q, start, end, step)
	return m, err
}

// runW also returns the annotations, sorted.
func (f *fixture) runW(t testing.TB, eng promql.QueryEngine, q string, start, end int64, step time.Duration) (promql.Matrix, []string, error) {
	t.Helper()
	qry, err := eng.NewRangeQuery(context.Background(), f.db, nil, q, time.UnixMilli(start), time.UnixMilli(end), step)
	require.NoError(t, err)
	res := qry.Exec(context.Background())
	if res.Err != nil {
		qry.Close()
		return nil, nil, res.Err
	}
	var warns []string
	for _, w := range res.Warnings {
		warns = append(warns, w.Error())
	}
	sort.Strings(warns)
	m := res.Value.(promql.Matrix)
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...), Histograms: append([]promql.HPoint(nil), s.Histograms...)}
	}
	qry.Close()
	return out, warns, nil
}

// TestCachedEqualsUncached evaluates many queries over ranges that slide
// as a refreshed dashboard's do, with writes in between — appended at the
// end, out of order into the cached ranges, new series back-dated — and
// requires every cached answer to be bit for bit the engine's own.
func TestCachedEqualsUncached(t *testing.T) {
	f := newFixture(t, 64<<20)
	const minute = int64(60_000)
	base := (time.Now().UnixMilli()/minute - 180) * minute
	f.write(t, base, base+150*minute, 15_000, 1)
	rng := rand.New(rand.NewSource(2))
	end := base + 120*minute
	for round := range 12 {
		step := []time.Duration{time.Minute, 30 * time.Second, 15 * time.Second, 45 * time.Second}[round%4]
		switch round % 4 {
		case 1:
			// Out of order into what the previous rounds cached.
			ts := end - int64(rng.Intn(60))*minute - 7_000
			app := f.db.Appender(context.Background())
			_, err := app.Append(0, labels.FromStrings("__name__", "gauge", "job", "api", "instance", "i1"), ts, 1e6)
			require.NoError(t, err)
			_, err = app.Append(0, labels.FromStrings("__name__", "req_total", "job", "api", "instance", "i9"), ts, 5)
			require.NoError(t, err)
			require.NoError(t, app.Commit())
		case 2:
			f.write(t, base+150*minute+int64(round)*15_000, base+150*minute+int64(round)*15_000, 15_000, int64(round))
		}
		for qi, q := range queries {
			if qi == 17 {
				q = fmt.Sprintf(q, (base+90*minute)/1000)
			}
			// The same panel at refreshes: the range moves by a step or
			// less, sometimes back, sometimes wider.
			for shift := range 3 {
				s := end - 60*minute - int64(shift)*int64(rng.Intn(3))*step.Milliseconds()/2
				e := end + int64(shift)*step.Milliseconds()
				if shift == 2 {
					s -= 30 * minute
				}
				want, wwarn, werr := f.runW(t, f.plain, q, s, e, step)
				got, gwarn, gerr := f.runW(t, f.cached, q, s, e, step)
				msg := fmt.Sprintf("round %d %q [%d, %d] step %s", round, q, s-base, e-base, step)
				if werr != nil {
					require.EqualError(t, gerr, werr.Error(), msg)
					continue
				}
				require.NoError(t, gerr, msg)
				equalMatrix(t, want, got, msg)
				require.Equal(t, wwarn, gwarn, msg)
			}
		}
		end += step.Milliseconds()
	}
	st := f.cache.Stats()
	t.Logf("cache: %+v", st)
	require.Positive(t, st.Queries["hit"]+st.Queries["partial"])
	require.Positive(t, st.Queries["uncacheable"])
	require.Positive(t, st.StepsCached)
}

// TestOutOfOrderWriteInvalidates caches a range, writes an out-of-order
// sample into it and requires the next (cached) answer to show it.
func TestOutOfOrderWriteInvalidates(t *testing.T) {
	f := newFixture(t, 64<<20)
	const minute = int64(60_000)
	base := (time.Now().UnixMilli()/minute - 120) * minute
	f.write(t, base, base+60*minute, 15_000, 1)
	q := `max_over_time(gauge{instance="i0"}[1m])`
	s, e := base+10*minute, base+50*minute
	before, err := f.run(t, f.cached, q, s, e, time.Minute)
	require.NoError(t, err)
	again, err := f.run(t, f.cached, q, s, e, time.Minute)
	require.NoError(t, err)
	equalMatrix(t, before, again, "second run")
	require.Equal(t, int64(1), f.cache.Stats().Queries["hit"])

	// Out of order, 30 minutes behind the newest sample, inside the
	// cached range.
	ts := base + 30*minute - 20_000
	app := f.db.Appender(context.Background())
	_, err = app.Append(0, labels.FromStrings("__name__", "gauge", "job", "api", "instance", "i0"), ts, 1e9)
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	after, err := f.run(t, f.cached, q, s, e, time.Minute)
	require.NoError(t, err)
	want, err := f.run(t, f.plain, q, s, e, time.Minute)
	require.NoError(t, err)
	equalMatrix(t, want, after, "after the out-of-order write")
	found := false
	for _, p := range after[0].Floats {
		if p.F == 1e9 {
			found = true
			require.Equal(t, base+30*minute, p.T)
		}
	}
	require.True(t, found, "the out-of-order sample is in the answer")
	st := f.cache.Stats()
	require.Equal(t, int64(1), st.Queries["partial"], "only the steps that read the write were evaluated again: %+v", st)

	// The entry that replaced the first serves the next run whole.
	again, err = f.run(t, f.cached, q, s, e, time.Minute)
	require.NoError(t, err)
	equalMatrix(t, want, again, "third run")
	st = f.cache.Stats()
	require.Equal(t, int64(2), st.Queries["hit"], "%+v", st)
	require.Equal(t, 1, st.Entries)
}

// TestConcurrentWritesAndQueries runs queries through the cache while
// writers append in and out of order, then requires the cached answer
// equal to the engine's once the writes stop: a write during an
// evaluation is never lost by the entry it produces.
func TestConcurrentWritesAndQueries(t *testing.T) {
	f := newFixture(t, 64<<20)
	const minute = int64(60_000)
	base := (time.Now().UnixMilli()/minute - 120) * minute
	f.write(t, base, base+60*minute, 15_000, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewSource(3))
		for i := range 300 {
			app := f.db.Appender(context.Background())
			ts := base + int64(rng.Intn(60))*minute + 1000 + int64(i)
			_, _ = app.Append(0, labels.FromStrings("__name__", "gauge", "job", "api", "instance", "i2"), ts, float64(i))
			_ = app.Commit()
		}
	}()
	q := `sum(max_over_time(gauge[2m]))`
	for {
		_, err := f.run(t, f.cached, q, base+5*minute, base+60*minute, 30*time.Second)
		require.NoError(t, err)
		select {
		case <-done:
			want, err := f.run(t, f.plain, q, base+5*minute, base+60*minute, 30*time.Second)
			require.NoError(t, err)
			got, err := f.run(t, f.cached, q, base+5*minute, base+60*minute, 30*time.Second)
			require.NoError(t, err)
			equalMatrix(t, want, got, "after concurrent writes")
			return
		default:
		}
	}
}

// TestEviction keeps the cache within its size.
func TestEviction(t *testing.T) {
	f := newFixture(t, 40_000)
	const minute = int64(60_000)
	base := (time.Now().UnixMilli()/minute - 120) * minute
	f.write(t, base, base+60*minute, 15_000, 1)
	for i := range 20 {
		_, err := f.run(t, f.cached, fmt.Sprintf("req_total * %d", i), base, base+60*minute, time.Minute)
		require.NoError(t, err)
		require.LessOrEqual(t, f.cache.Stats().Bytes, int64(40_000))
	}
	require.Positive(t, f.cache.Stats().Entries)
}
