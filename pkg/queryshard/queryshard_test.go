package queryshard_test

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/bench/redgen"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/queryshard"
	lvstorage "github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// TestPromQLBuiltinSharded runs Prometheus' built-in PromQL test files
// through the sharding engine over levitated's store: every shardable
// aggregation in them is evaluated in shards, and the results must be the
// files' expected ones.
func TestPromQLBuiltinSharded(t *testing.T) {
	for _, shards := range []int{2, 3, -3} {
		rollups := shards < 0
		shards = max(shards, -shards)
		t.Run(map[int]string{2: "shards=2", 3: "shards=3"}[shards]+map[bool]string{true: ",rollups"}[rollups], func(t *testing.T) {
			opts := levpromql.DefaultOptions()
			opts.Timeout = 100 * time.Second
			opts.UseStartTimestamps = true // start_timestamps.test needs it, as promqltest's engine has it
			inner, err := levpromql.New(opts)
			require.NoError(t, err)
			defer inner.Close()
			engine := queryshard.New(inner, shards, levpromql.NewParser(), levpromql.EventFunctions()...)
			if rollups {
				engine.WithRollups(queryshard.RollupOptions{Timeout: opts.Timeout, LookbackDelta: opts.LookbackDelta, MaxSamples: opts.MaxSamples})
			}
			promqltest.RunBuiltinTestsWithStorage(t, engine, func(tb testing.TB) storage.Storage { return storagetest.New(tb) })
			// The files are full of shardable aggregations; make sure they
			// went through the shards (and, with rollups, through pkg/rollup).
			require.Greater(t, engine.Sharded(), int64(150))
			if rollups {
				require.Greater(t, engine.RolledUp(), int64(100))
			}
			t.Logf("%d queries ran sharded, %d shards rolled up", engine.Sharded(), engine.RolledUp())
		})
	}
}

// TestShardedResultsAreBitIdentical evaluates RED-style queries with and
// without sharding over the same store and requires the same series and
// the same float bits at every step.
func TestShardedResultsAreBitIdentical(t *testing.T) {
	db, t0 := redStore(t, 3000, 240)
	ctx := context.Background()
	opts := levpromql.DefaultOptions()
	inner, err := levpromql.New(opts)
	require.NoError(t, err)
	defer inner.Close()
	start, end := time.UnixMilli(t0+30*60_000), time.UnixMilli(t0+59*60_000)
	for _, shards := range []int{3, 1} {
		sharded := queryshard.New(inner, shards, levpromql.NewParser(), levpromql.EventFunctions()...).
			WithRollups(queryshard.RollupOptions{Timeout: opts.Timeout, LookbackDelta: opts.LookbackDelta, MaxSamples: opts.MaxSamples})
		for _, q := range []string{
			`sum by (service) (rate(http_requests_total[5m]))`,
			`histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket[5m])))`,
			`topk(10, sum by (service, route) (rate(http_requests_total[5m])))`,
			`sum by (service) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (service) (rate(http_requests_total[5m]))`,
			`max by (route) (rate(http_requests_total{service="checkout"}[5m])) - on (route) group_left sum by (route) (rate(http_requests_total[5m]))`,
			`count by (__name__) ({__name__=~".+"})`,
			`max by (service) (max_over_time(process_resident_memory_bytes[30m]))`,
			`topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])))`,
			`sum without (instance, cpu) (rate(node_cpu_seconds_total[5m])) > 0.1`,
			`min by (job) (cpu_usage_ratio) - max by (job) (cpu_usage_ratio)`,
			`group by (service) (up)`,
			`bottomk by (service) (2, go_goroutines)`,
			`rate(http_requests_total{service=~"checkout|cart|users",method="POST",route=~"/api/v1/.*"}[5m])`,
			`(irate(node_cpu_seconds_total{mode!="idle"}[2m]))`,
			`last_over_time(process_resident_memory_bytes[10m])`,
			`cpu_usage_ratio`,
			`(http_requests_total{service="checkout",code="200"})`,
		} {
			for _, instant := range []bool{false, true} {
				run := func(e promql.QueryEngine) promql.Matrix {
					var qry promql.Query
					var err error
					if instant {
						qry, err = e.NewInstantQuery(ctx, db, nil, q, end)
					} else {
						qry, err = e.NewRangeQuery(ctx, db, nil, q, start, end, time.Minute)
					}
					require.NoError(t, err, q)
					defer qry.Close()
					res := qry.Exec(ctx)
					require.NoError(t, res.Err, q)
					switch v := res.Value.(type) {
					case promql.Matrix:
						// Close gives the points back to the engine's pools.
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
					t.Fatalf("%s: result %T", q, res.Value)
					return nil
				}
				before, rolledBefore, sharedBefore := sharded.Sharded(), sharded.RolledUp(), sharded.SharedReads()
				want, got := run(inner), run(sharded)
				// The two sides of these read one select.
				if strings.Contains(q, ") - on") || strings.Contains(q, ") / sum") {
					require.Greater(t, sharded.SharedReads(), sharedBefore, "%s: one read for both sides", q)
				}
				// Every one of these is rewritten: sharded, or below topk
				// evaluated by a rollup over all series, which keeps the order
				// of topk's input; a range query of a range function or a
				// bare selector alone is a rollup without aggregation (not
				// an instant one: the engine reads one window per series
				// then).
				perSeries := !strings.Contains(q, " (")
				if (shards > 1 || !strings.HasPrefix(q, "bottomk")) && !(perSeries && instant) {
					require.Greater(t, sharded.Sharded(), before, "%s was not sharded", q)
				}
				if !strings.HasPrefix(q, "bottomk") && !(perSeries && instant) {
					require.Greater(t, sharded.RolledUp(), rolledBefore, "%s was not rolled up", q)
				}
				if instant && strings.HasPrefix(q, "topk(") {
					// An instant topk's result is in its own order: the same.
					require.Equal(t, len(want), len(got), q)
					for i := range want {
						require.Equal(t, want[i].Metric, got[i].Metric, "%s: order", q)
					}
				}
				require.Equal(t, len(want), len(got), q)
				sort.Slice(want, func(i, j int) bool { return labels.Compare(want[i].Metric, want[j].Metric) < 0 })
				sort.Slice(got, func(i, j int) bool { return labels.Compare(got[i].Metric, got[j].Metric) < 0 })
				for i := range want {
					require.Equal(t, want[i].Metric, got[i].Metric, q)
					require.Equal(t, len(want[i].Floats), len(got[i].Floats), "%s %s", q, want[i].Metric)
					for k := range want[i].Floats {
						require.Equal(t, want[i].Floats[k].T, got[i].Floats[k].T)
						require.Equal(t, math.Float64bits(want[i].Floats[k].F), math.Float64bits(got[i].Floats[k].F), "%s %s at %d", q, want[i].Metric, want[i].Floats[k].T)
					}
				}
			}
		}
	}
}

// TestRollupKeepsTopkTies: below topk a rollup evaluates the aggregation
// over all series, so that of equal values topk keeps the ones the engine
// keeps (it depends on the order of its input).
func TestRollupKeepsTopkTies(t *testing.T) {
	db := storagetest.New(t)
	ctx := context.Background()
	t0 := int64(1_700_000_000_000)
	app := db.AppenderV2(ctx)
	for i := range 12 {
		lset := labels.FromStrings("__name__", "ties_total", "group", string(rune('a'+(11-i)%6)), "inst", strconv.Itoa(i))
		var ref promstorage.SeriesRef
		var err error
		for k := int64(0); k < 80; k++ {
			ref, err = app.Append(ref, lset, 0, t0+k*15_000, float64(k*10), nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
		}
	}
	// NaN rates in some groups at some steps: the heaps order NaN lowest.
	for i := range 6 {
		lset := labels.FromStrings("__name__", "nan_total", "group", string(rune('a'+i%3)), "inst", strconv.Itoa(i))
		var ref promstorage.SeriesRef
		var err error
		for k := int64(0); k < 80; k++ {
			v := float64(k * int64(i+1))
			if (k/10+int64(i))%4 == 0 {
				v = math.NaN()
			}
			ref, err = app.Append(ref, lset, 0, t0+k*15_000, v, nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	inner, sharded := rollupEngines(t, 3, levpromql.NewParser())
	// Range queries: topk and bottomk over a rollup select at each step
	// (queryshard's own heap), with ties and NaN, as the engine does.
	for _, q := range []string{
		`topk(2, sum by (group) (rate(ties_total[5m])))`,
		`topk(1, sum by (group) (rate(ties_total[5m])))`,
		`bottomk(3, count by (group) (ties_total))`,
		`bottomk(2, max by (group) (ties_total))`,
		`topk(2, sum by (group) (rate(nan_total[2m])))`,
		`bottomk(2, (sum by (group) (rate(nan_total[2m]))))`,
		`topk(7, sum by (group, inst) (rate(nan_total[2m])))`,
		`topk(2.9, min by (inst) (nan_total))`,
	} {
		exec := func(e promql.QueryEngine) promql.Matrix {
			qry, err := e.NewRangeQuery(ctx, db, nil, q, time.UnixMilli(t0+4*60_000), time.UnixMilli(t0+19*60_000), 30*time.Second)
			require.NoError(t, err)
			defer qry.Close()
			res := qry.Exec(ctx)
			require.NoError(t, res.Err, q)
			out := promql.Matrix{}
			for _, s := range res.Value.(promql.Matrix) {
				out = append(out, promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)})
			}
			return out
		}
		rolled := sharded.RolledUp()
		want, got := exec(inner), exec(sharded)
		require.Greater(t, sharded.RolledUp(), rolled, q)
		require.Equal(t, len(want), len(got), q)
		for i := range want {
			require.Equal(t, want[i].Metric.String(), got[i].Metric.String(), "%s: #%d", q, i)
			require.Equal(t, len(want[i].Floats), len(got[i].Floats), "%s %s", q, want[i].Metric)
			for k := range want[i].Floats {
				require.Equal(t, want[i].Floats[k].T, got[i].Floats[k].T, q)
				require.Equal(t, math.Float64bits(want[i].Floats[k].F), math.Float64bits(got[i].Floats[k].F), "%s %s", q, want[i].Metric)
			}
		}
	}
	at := time.UnixMilli(t0 + 15*60_000)
	for _, q := range []string{
		`topk(2, sum by (group) (rate(ties_total[5m])))`,
		`bottomk(3, count by (group) (ties_total))`,
		`sort_desc(sum by (group) (increase(ties_total[5m])))`,
	} {
		exec := func(e promql.QueryEngine) promql.Vector {
			qry, err := e.NewInstantQuery(ctx, db, nil, q, at)
			require.NoError(t, err)
			defer qry.Close()
			res := qry.Exec(ctx)
			require.NoError(t, res.Err, q)
			return append(promql.Vector(nil), res.Value.(promql.Vector)...)
		}
		rolled := sharded.RolledUp()
		want, got := exec(inner), exec(sharded)
		require.Greater(t, sharded.RolledUp(), rolled, q)
		require.Equal(t, len(want), len(got), q)
		for i := range want {
			require.Equal(t, want[i].Metric.String(), got[i].Metric.String(), "%s: #%d", q, i)
			require.Equal(t, math.Float64bits(want[i].F), math.Float64bits(got[i].F), q)
		}
	}
}

// TestRollupPointsLiveUntilClose: the points of a range query evaluated by
// a rollup without aggregation go back to the rollup's pool at the query's
// Close, not before: a result still open keeps its values while other
// queries run (and reuse what closed ones gave back), and a query run
// after its Close is still the engine's.
func TestRollupPointsLiveUntilClose(t *testing.T) {
	db, t0 := redStore(t, 600, 120)
	ctx := context.Background()
	inner, sharded := rollupEngines(t, 2, levpromql.NewParser())
	start, end := time.UnixMilli(t0+10*60_000), time.UnixMilli(t0+29*60_000)
	queries := []string{
		`rate(http_requests_total{service=~"checkout|cart"}[5m])`,
		`rate(http_requests_total{service!~"checkout|cart"}[5m])`,
		`max_over_time(process_resident_memory_bytes[3m])`,
	}
	open := func(e promql.QueryEngine, q string) (promql.Query, promql.Matrix) {
		qry, err := e.NewRangeQuery(ctx, db, nil, q, start, end, 30*time.Second)
		require.NoError(t, err, q)
		res := qry.Exec(ctx)
		require.NoError(t, res.Err, q)
		m, ok := res.Value.(promql.Matrix)
		require.True(t, ok, q)
		return qry, m
	}
	want := map[string]promql.Matrix{}
	for _, q := range queries {
		qry, m := open(inner, q)
		want[q] = make(promql.Matrix, len(m))
		for i, s := range m {
			want[q][i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
		}
		qry.Close()
		require.NotEmpty(t, want[q], q)
	}
	equal := func(q string, got promql.Matrix) {
		t.Helper()
		require.Equal(t, len(want[q]), len(got), q)
		for i := range got {
			require.Equal(t, want[q][i].Metric, got[i].Metric, q)
			require.Equal(t, want[q][i].Floats, got[i].Floats, "%s %s", q, got[i].Metric)
		}
	}
	for round := range 3 {
		rolledBefore := sharded.RolledUp()
		held, heldM := open(sharded, queries[round%len(queries)])
		for i := range 6 {
			q := queries[(round+i)%len(queries)]
			qry, m := open(sharded, q)
			equal(q, m)
			qry.Close()
		}
		// Still open: its points are its own.
		equal(queries[round%len(queries)], heldM)
		held.Close()
		require.Greater(t, sharded.RolledUp(), rolledBefore+6, "the queries were not rolled up")
	}
}

// rollupEngines returns levitated's engine with its default options, closed
// when t ends, and a queryshard engine over it with shards shards, parser p
// and the engine's settings for rollups.
func rollupEngines(t *testing.T, shards int, p parser.Parser) (*promql.Engine, *queryshard.Engine) {
	t.Helper()
	opts := levpromql.DefaultOptions()
	inner, err := levpromql.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { inner.Close() })
	return inner, queryshard.New(inner, shards, p, levpromql.EventFunctions()...).
		WithRollups(queryshard.RollupOptions{Timeout: opts.Timeout, LookbackDelta: opts.LookbackDelta, MaxSamples: opts.MaxSamples})
}

// redStore is a store holding redgen's n series, a sample each every 15 s
// for steps steps from t0.
func redStore(t *testing.T, n int, steps int64) (db *lvstorage.DB, t0 int64) {
	t.Helper()
	db = storagetest.New(t)
	ctx := context.Background()
	series := redgen.Build(n)
	refs := make([]promstorage.SeriesRef, len(series))
	t0 = int64(1_700_000_000_000)
	for step := range steps {
		app := db.AppenderV2(ctx)
		for i, s := range series {
			ref, err := app.Append(refs[i], s.Labels, 0, t0+step*15_000, s.Next(step), nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
			refs[i] = ref
		}
		require.NoError(t, app.Commit())
	}
	return db, t0
}

// countingParser counts the texts the engine parses.
type countingParser struct {
	parser.Parser
	n atomic.Int64
}

func (p *countingParser) ParseExpr(input string) (parser.Expr, error) {
	p.n.Add(1)
	return p.Parser.ParseExpr(input)
}

// TestTopPlansCachedByText: a range query that is a range function or a
// selector alone is parsed once for its text, whatever its range and step;
// the cached tree and plan, read by many queries at once (run with -race),
// give every one the engine's answer. A query with an aggregation (its
// tree is rewritten) and an instant one are parsed each time.
func TestTopPlansCachedByText(t *testing.T) {
	db, t0 := redStore(t, 300, 120)
	ctx := context.Background()
	p := &countingParser{Parser: levpromql.NewParser()}
	inner, sharded := rollupEngines(t, 2, p)
	queries := []string{
		`rate(http_requests_total{service=~"checkout|cart"}[5m])`,
		`process_resident_memory_bytes`,
		`max_over_time(process_resident_memory_bytes[3m])`,
	}
	ranges := [][2]int64{{10, 29}, {12, 25}, {0, 29}}
	run := func(e promql.QueryEngine, q string, r [2]int64) promql.Matrix {
		qry, err := e.NewRangeQuery(ctx, db, nil, q, time.UnixMilli(t0+r[0]*60_000), time.UnixMilli(t0+r[1]*60_000), 30*time.Second)
		require.NoError(t, err, q)
		defer qry.Close()
		res := qry.Exec(ctx)
		require.NoError(t, res.Err, q)
		m, ok := res.Value.(promql.Matrix)
		require.True(t, ok, q)
		out := make(promql.Matrix, len(m))
		for i, s := range m {
			out[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
		}
		return out
	}
	want := map[string]promql.Matrix{}
	for _, q := range queries {
		for _, r := range ranges {
			want[q+fmt.Sprint(r)] = run(inner, q, r)
			require.NotEmpty(t, want[q+fmt.Sprint(r)], q)
		}
	}
	rolled := sharded.RolledUp()
	type answer struct {
		key string
		got promql.Matrix
	}
	answers := make([][]answer, 6)
	var wg sync.WaitGroup
	for g := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				q, r := queries[(g+i)%len(queries)], ranges[(g+2*i)%len(ranges)]
				answers[g] = append(answers[g], answer{q + fmt.Sprint(r), run(sharded, q, r)})
			}
		}()
	}
	wg.Wait()
	for _, as := range answers {
		for _, a := range as {
			require.Equal(t, want[a.key], a.got, a.key)
		}
	}
	require.Equal(t, rolled+72, sharded.RolledUp(), "every query was rolled up")
	// A text the first time is parsed, and only the first time (two
	// goroutines may both parse a text before either has cached it).
	require.GreaterOrEqual(t, p.n.Load(), int64(len(queries)))
	require.LessOrEqual(t, p.n.Load(), int64(len(queries)*6))
	n := p.n.Load()
	for _, q := range queries {
		run(sharded, q, ranges[0])
	}
	require.Equal(t, n, p.n.Load(), "a cached text was parsed again")

	// Rewritten and instant queries are parsed every time.
	agg := `sum by (service) (rate(http_requests_total[5m]))`
	run(sharded, agg, ranges[0])
	n = p.n.Load()
	run(sharded, agg, ranges[0])
	require.Greater(t, p.n.Load(), n, "an aggregation's tree was reused")
	n = p.n.Load()
	qry, err := sharded.NewInstantQuery(ctx, db, nil, queries[0], time.UnixMilli(t0+20*60_000))
	require.NoError(t, err)
	qry.Close()
	require.Greater(t, p.n.Load(), n, "an instant query's tree was reused")
}
