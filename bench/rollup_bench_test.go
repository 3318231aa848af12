package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/bench/redgen"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/queryshard"
	"github.com/levitated/levitated/pkg/storage"
)

var (
	rollupOnce sync.Once
	rollupDB   *storage.DB
)

// BenchmarkRollup runs peer-bench's range queries (2 h at 60 s steps) over
// levitated's store holding redgen's series written every 15 s for 2 h and
// flushed to Pebble (10,000 series by default; LEVITATED_BENCH_SERIES
// overrides), on four engines in the same run:
//   - engine: Prometheus' engine alone;
//   - sharded: pkg/queryshard over it (2 shards), as main before rollups;
//   - rollup: the same with pkg/rollup evaluating what it can;
//   - rollup1: rollups without sharding (--query.shards 1).
//
// Each engine's result is checked against the engine's once, bit for bit.
func BenchmarkRollup(b *testing.B) {
	n := 10_000
	if v := os.Getenv("LEVITATED_BENCH_SERIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	const points = 480
	rollupOnce.Do(func() {
		dir, err := os.MkdirTemp("", "levitated-bench-rollup-")
		if err != nil {
			b.Fatal(err)
		}
		selectDirs = append(selectDirs, dir)
		db, err := storage.Open(dir, storage.DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		series := redgen.Build(n)
		refs := make([]promstorage.SeriesRef, n)
		for step := int64(0); step < points; step++ {
			appendRound(b, db, series, refs, step)
		}
		if err := db.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		rollupDB = db
	})
	opts := levpromql.DefaultOptions()
	inner, err := levpromql.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer inner.Close()
	ro := queryshard.RollupOptions{Timeout: opts.Timeout, LookbackDelta: opts.LookbackDelta, MaxSamples: opts.MaxSamples}
	p := levpromql.NewParser()
	engines := []struct {
		name string
		e    promql.QueryEngine
	}{
		{"engine", inner},
		{"sharded", queryshard.New(inner, 2, p, levpromql.EventFunctions()...)},
		{"rollup", queryshard.New(inner, 2, p, levpromql.EventFunctions()...).WithRollups(ro)},
		{"rollup1", queryshard.New(inner, 1, p, levpromql.EventFunctions()...).WithRollups(ro)},
	}
	end := t0 + (points-1)*scrapeInterval
	start := end - 2*time.Hour.Milliseconds()
	for _, q := range []struct{ name, expr string }{
		{"rate_by_service", `sum by (service) (rate(http_requests_total[5m]))`},
		{"p99_by_service", `histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket[5m])))`},
		{"error_ratio", `sum by (service) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (service) (rate(http_requests_total[5m]))`},
		{"topk_routes", `topk(10, sum by (service, route) (rate(http_requests_total[5m])))`},
		{"count_by_name", `count by (__name__) ({__name__=~".+"})`},
		{"node_cpu_busy_top5", `topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])))`},
	} {
		var want promql.Matrix
		for _, e := range engines {
			b.Run(fmt.Sprintf("series=%d/query=%s/engine=%s", n, q.name, e.name), func(b *testing.B) {
				run := func() promql.Matrix {
					qry, err := e.e.NewRangeQuery(context.Background(), rollupDB, nil, q.expr, time.UnixMilli(start), time.UnixMilli(end), time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					defer qry.Close()
					res := qry.Exec(context.Background())
					if res.Err != nil {
						b.Fatal(res.Err)
					}
					m := res.Value.(promql.Matrix)
					out := make(promql.Matrix, len(m))
					for i, s := range m {
						out[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
					}
					return out
				}
				got := run()
				if want == nil {
					want = got
				} else if err := sameMatrix(want, got); err != nil {
					b.Fatalf("%s on %s: %v", q.name, e.name, err)
				}
				c0 := cpuNanos()
				for b.Loop() {
					run()
				}
				// CPU time per query: wall time hides what a query costs
				// on a loaded machine, and sharding spends CPU to save wall
				// time.
				b.ReportMetric(float64(cpuNanos()-c0)/1e6/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

func sameMatrix(want, got promql.Matrix) error {
	sort.Slice(want, func(i, j int) bool { return labels.Compare(want[i].Metric, want[j].Metric) < 0 })
	sort.Slice(got, func(i, j int) bool { return labels.Compare(got[i].Metric, got[j].Metric) < 0 })
	if len(want) != len(got) {
		return fmt.Errorf("%d series, want %d", len(got), len(want))
	}
	for i := range want {
		if !labels.Equal(want[i].Metric, got[i].Metric) || len(want[i].Floats) != len(got[i].Floats) {
			return fmt.Errorf("series %s differs", want[i].Metric)
		}
		for k, p := range want[i].Floats {
			if g := got[i].Floats[k]; g.T != p.T || math.Float64bits(g.F) != math.Float64bits(p.F) {
				return fmt.Errorf("%s at %d: %v, want %v", want[i].Metric, p.T, g.F, p.F)
			}
		}
	}
	return nil
}
