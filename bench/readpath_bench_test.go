package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/levitated/levitated/bench/redgen"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/queryshard"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// readOnce builds the stores of BenchmarkReadPath.
var readOnce = map[string]*sync.Once{"levitated": {}, "prometheus": {}}

// readSteps is the number of samples of each series: 480 (2 h), or
// LEVITATED_BENCH_STEPS.
func readSteps() int64 {
	n := int64(480)
	if s := os.Getenv("LEVITATED_BENCH_STEPS"); s != "" {
		_, _ = fmt.Sscan(s, &n)
	}
	return n
}

// readStore returns the store of kind holding 100k redgen series (or
// LEVITATED_BENCH_SERIES) with a sample every 15 s for 2 h (readSteps),
// flushed, as BenchmarkSelect2h's; built once per process, closed by
// TestMain.
func readStore(b *testing.B, kind string) benchStore {
	key := "read/" + kind
	readOnce[kind].Do(func() {
		n := 100_000
		if s := os.Getenv("LEVITATED_BENCH_SERIES"); s != "" {
			_, _ = fmt.Sscan(s, &n)
		}
		dir, err := os.MkdirTemp("", "levitated-bench-read-")
		if err != nil {
			b.Fatal(err)
		}
		selectDirs = append(selectDirs, dir)
		db := openStore(b, kind, dir)
		series := redgen.Build(n)
		refs := make([]promstorage.SeriesRef, n)
		for step := range readSteps() {
			appendRound(b, db, series, refs, step)
		}
		if d, ok := db.(*storage.DB); ok {
			if err := d.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		selectStore[key] = db
	})
	return selectStore[key]
}

// BenchmarkReadPath times the queries of ../shared/peer-bench whose cost
// is the store's read path (selecting series, their labels, their chunks)
// more than the engine's arithmetic, on a store of 100k redgen series (a sample
// every 15 s for 2 h, flushed; readStore): levitated as
// its server reads (its samples merged with the event store, the engine
// sharded over GOMAXPROCS shards by pkg/queryshard, no results cache)
// against Prometheus' TSDB under Prometheus' engine. Each case checks once
// that both give the same answer. cpu-ms/op is the process' CPU time per
// query (all goroutines: levitated's shards run in parallel). With
// LEVITATED_BENCH_PROFILE_DIR set, each case writes a CPU profile of its
// timed runs there.
func BenchmarkReadPath(b *testing.B) {
	end := t0 + (readSteps()-1)*scrapeInterval
	cases := []struct {
		name, kind, q string // kind: instant, range, series
	}{
		{"instant/rate_by_service", "instant", `sum by (service) (rate(http_requests_total[5m]))`},
		{"instant/topk_routes", "instant", `topk(10, sum by (service, route) (rate(http_requests_total[5m])))`},
		{"instant/count_by_name", "instant", `count by (__name__) ({__name__=~".+"})`},
		{"instant/regex_raw", "instant", `http_requests_total{service=~"checkout|cart|users",method="POST",route=~"/api/.*"}`},
		{"range/one_series_raw", "range", `http_requests_total{instance="10.1.0.1:8080",method="GET",route="/api/0",code="200"}`},
		{"series/series_checkout", "series", `{__name__="http_requests_total",service="checkout"}`},
	}
	type env struct {
		engine promql.QueryEngine
		q      promstorage.Queryable
	}
	envs := map[string]env{}
	newEnv := func(b *testing.B, kind string) env {
		if e, ok := envs[kind]; ok {
			return e
		}
		db := readStore(b, kind)
		var e env
		switch kind {
		case "levitated":
			d := db.(*storage.DB)
			es := eventstore.New(storagetest.Namespace(b, d, storage.OwnerEvents), eventstore.Options{})
			opts := levpromql.DefaultOptions()
			eng, err := levpromql.New(opts)
			if err != nil {
				b.Fatal(err)
			}
			e = env{queryshard.New(eng, runtime.GOMAXPROCS(0), opts.Parser(), levpromql.EventFunctions()...), levpromql.NewQueryable(d, es.Queryable(d))}
		case "prometheus":
			e = env{promql.NewEngine(promql.EngineOpts{
				MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute,
				EnableAtModifier: true, EnableNegativeOffset: true, EnableDelayedNameRemoval: true,
			}), db.(*tsdb.DB)}
		}
		envs[kind] = e
		return e
	}
	// run evaluates one case and returns the number of series in its
	// answer and, with keep, the answer as sorted strings.
	run := func(b *testing.B, e env, kind, q string, keep bool) (int, []string) {
		ctx := context.Background()
		if kind == "series" {
			querier, err := e.q.Querier(end-2*3600_000, end)
			if err != nil {
				b.Fatal(err)
			}
			defer querier.Close()
			ms, err := levpromql.NewParser().ParseMetricSelector(q)
			if err != nil {
				b.Fatal(err)
			}
			// As Prometheus' /api/v1/series with one match[].
			ss := querier.Select(ctx, false, &promstorage.SelectHints{Start: end - 2*3600_000, End: end, Func: "series"}, ms...)
			var out []string
			n := 0
			for ss.Next() {
				n++
				if keep {
					out = append(out, ss.At().Labels().String())
				}
			}
			if err := ss.Err(); err != nil {
				b.Fatal(err)
			}
			slices.Sort(out)
			return n, out
		}
		var qry promql.Query
		var err error
		if kind == "instant" {
			qry, err = e.engine.NewInstantQuery(ctx, e.q, nil, q, time.UnixMilli(end))
		} else {
			qry, err = e.engine.NewRangeQuery(ctx, e.q, nil, q, time.UnixMilli(end-2*3600_000), time.UnixMilli(end), time.Minute)
		}
		if err != nil {
			b.Fatal(err)
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			b.Fatal(res.Err)
		}
		var out []string
		n := 0
		switch v := res.Value.(type) {
		case promql.Vector:
			n = len(v)
			for _, s := range v {
				if keep {
					out = append(out, fmt.Sprintf("%s %d %v", s.Metric, s.T, s.F))
				}
			}
		case promql.Matrix:
			n = len(v)
			for _, s := range v {
				if keep {
					out = append(out, fmt.Sprintf("%s %v", s.Metric, s.Floats))
				}
			}
		}
		slices.Sort(out)
		return n, out
	}
	checked := map[string]bool{}
	for _, c := range cases {
		for _, kind := range storeKinds {
			b.Run(fmt.Sprintf("%s/store=%s", c.name, kind), func(b *testing.B) {
				e := newEnv(b, kind)
				if !checked[c.name] {
					checked[c.name] = true
					_, want := run(b, newEnv(b, "prometheus"), c.kind, c.q, true)
					_, got := run(b, newEnv(b, "levitated"), c.kind, c.q, true)
					if !slices.Equal(got, want) || len(want) == 0 {
						b.Fatalf("%s: levitated gives %d results, Prometheus %d, not the same", c.name, len(got), len(want))
					}
				}
				if dir := os.Getenv("LEVITATED_BENCH_PROFILE_DIR"); dir != "" {
					f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(c.name, "/", "-")+"-"+kind+".cpu"))
					if err != nil {
						b.Fatal(err)
					}
					if err := pprof.StartCPUProfile(f); err != nil {
						b.Fatal(err)
					}
					defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
				}
				var n int
				cpu := cpuNanos()
				for b.Loop() {
					n, _ = run(b, e, c.kind, c.q, false)
				}
				b.ReportMetric(float64(cpuNanos()-cpu)/1e6/float64(b.N), "cpu-ms/op")
				b.ReportMetric(float64(n), "series")
			})
		}
	}
}
