package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/levitated/levitated/bench/redgen"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/resultscache"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/tenant"
)

// BenchmarkResultsCache runs a Grafana panel — a range query over the last
// 2 h at 60 s steps — against levitated's store holding redgen's series
// (10,000 by default; LEVITATED_BENCH_SERIES overrides), written every 15 s
// up to "now", through Prometheus' engine with and without the results
// cache (pkg/resultscache). Cases:
//   - uncached: the engine alone, every run evaluates 121 steps;
//   - repeat: the same range again with no write in between (a dashboard
//     reloaded, or several viewers): every step from the cache;
//   - refresh: before each run, one scrape of every series is written at the
//     next 15 s, and every 4th run the range moves by one step, as a panel
//     refreshed every 15 s with live data: the steps the new samples reach
//     are evaluated, the rest come from the cache;
//   - miss: every run after a write that reaches all the cached steps (an
//     out-of-order sample at the start of the range), which measures what a
//     miss costs over the engine alone.
//
// It reports hit-ratio (steps from the cache ÷ all steps) and, for the
// cache, its bytes.
func BenchmarkResultsCache(b *testing.B) {
	n := 10_000
	if v := os.Getenv("LEVITATED_BENCH_SERIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []string{
		`sum by (service) (rate(http_requests_total[5m]))`,
		`histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket[5m])))`,
	} {
		for _, mode := range []string{"uncached", "repeat", "refresh", "miss"} {
			b.Run(fmt.Sprintf("series=%d/query=%s/mode=%s", n, queryName(q), mode), func(b *testing.B) {
				benchResultsCache(b, n, q, mode)
			})
		}
	}
}

func queryName(q string) string {
	if len(q) > 20 {
		return q[:20]
	}
	return q
}

func benchResultsCache(b *testing.B, n int, q, mode string) {
	c := resultscache.New(resultscache.Options{MaxBytes: 256 << 20, Parser: levpromql.NewParser(), EventFunctions: levpromql.EventFunctions()})
	o := storage.DefaultOptions()
	o.OnChange = c.SamplesChanged
	o.OutOfOrderWindow = 3 * time.Hour
	db, err := storage.Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	eng, err := levpromql.New(levpromql.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	series := redgen.Build(n)
	const every = int64(15_000)
	now := time.Now().UnixMilli() / 60_000 * 60_000
	first := now - 2*time.Hour.Milliseconds() - 10*60_000
	var step int64
	write := func(ts int64) {
		app := db.Appender(context.Background())
		for i, s := range series {
			if _, err := app.Append(0, s.Labels, ts, s.Next(step)); err != nil {
				b.Fatal(err)
			}
			if i%10_000 == 9_999 {
				if err := app.Commit(); err != nil {
					b.Fatal(err)
				}
				app = db.Appender(context.Background())
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
		step++
	}
	last := first
	for ts := first; ts <= now; ts += every {
		write(ts)
		last = ts
	}
	var engine promql.QueryEngine = eng
	if mode != "uncached" {
		engine = c.Engine(eng)
	}
	end := now
	run := func() {
		qry, err := engine.NewRangeQuery(context.Background(), db, nil, q, time.UnixMilli(end-2*time.Hour.Milliseconds()), time.UnixMilli(end), time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		res := qry.Exec(context.Background())
		if res.Err != nil {
			b.Fatal(res.Err)
		}
		qry.Close()
	}
	run() // fills the cache
	before := c.Stats()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		switch mode {
		case "refresh":
			b.StopTimer()
			last += every
			write(last)
			if i%4 == 3 {
				end += 60_000
			}
			b.StartTimer()
		case "miss":
			b.StopTimer()
			// What out-of-order writes all over the range tell the cache.
			c.SamplesChanged(tenant.FromContext(context.Background()), end-3*time.Hour.Milliseconds(), end)
			b.StartTimer()
		}
		run()
	}
	b.StopTimer()
	after := c.Stats()
	if mode != "uncached" {
		cached := after.StepsCached - before.StepsCached
		evaluated := after.StepsEvaluated - before.StepsEvaluated
		b.ReportMetric(float64(cached)/float64(max(cached+evaluated, 1)), "hit-ratio")
		b.ReportMetric(float64(after.Bytes), "cache-bytes")
		if os.Getenv("LEVITATED_BENCH_VERBOSE") != "" {
			b.Logf("before %+v after %+v", before, after)
		}
	}
}
