package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/levitated/levitated/bench/redgen"
	"github.com/levitated/levitated/pkg/server"
)

// BenchmarkImpactJudge measures one automatic judgement (pkg/impact, the
// default signals) of a 5-minute deploy window over redgen's series on a
// real server: each op is POST /api/v1/gates:evaluate with dry_run for the
// change, which judges it now (nothing is recorded, so every op judges
// again). It reports the process's CPU, allocations and GC cycles per
// judgement, with the results cache off (every judgement evaluates its
// queries) and on (a judgement again is served from it).
//
//	go test ./bench -run '^$' -bench '^BenchmarkImpactJudge$' -benchtime 20x
//
// LEVITATED_IMPACT_JUDGE_SERIES (default 100000);
// LEVITATED_IMPACT_JUDGE_CPUPROFILE=file writes a CPU profile of the
// judgements alone (not the history's load).
func BenchmarkImpactJudge(b *testing.B) {
	nSeries := 100_000
	if v := os.Getenv("LEVITATED_IMPACT_JUDGE_SERIES"); v != "" {
		nSeries, _ = strconv.Atoi(v)
	}
	for _, cache := range []bool{false, true} {
		b.Run(fmt.Sprintf("results-cache=%t", cache), func(b *testing.B) { benchJudge(b, nSeries, cache) })
	}
}

func benchJudge(b *testing.B, nSeries int, cache bool) {
	o := server.DefaultOptions()
	if !cache {
		o.QueryResultsCacheBytes = 0
	}
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = b.TempDir()
	o.Storage.OutOfOrderWindow = 2 * time.Hour
	o.Impact.Disabled = true // the gate judges; the scheduler does not
	srv, err := server.New(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	url := "http://" + srv.Addr().String()

	// 15 minutes of history at 15 s.
	series := redgen.Build(nSeries)
	const scrape = 15 * time.Second
	const histSteps = 60
	now := time.Now().Truncate(scrape)
	t0 := now.Add(-histSteps * scrape)
	db := srv.DB()
	for step := range int64(histSteps) {
		ts := t0.Add(time.Duration(step) * scrape).UnixMilli()
		for lo := 0; lo < len(series); lo += 10_000 {
			app := db.Appender(ctx)
			for _, s := range series[lo:min(lo+10_000, len(series))] {
				if _, err := app.Append(0, s.Labels, ts, s.Next(step)); err != nil {
					b.Fatal(err)
				}
			}
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	stop := now.Add(-time.Minute)
	var ev struct {
		ID string `json:"id"`
	}
	attrs := `{"service":"checkout","version":"2"}`
	postJSON(b, url+"/api/v1/events", fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":%s}`, stop.Add(-5*time.Minute).Format(time.RFC3339Nano), attrs), &ev)
	var ev2 struct{}
	postJSON(b, url+"/api/v1/events", fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":%s}`, stop.Format(time.RFC3339Nano), attrs), &ev2)
	body := fmt.Sprintf(`{"service":"checkout","event_id":%q,"dry_run":true,"always_ok":true}`, ev.ID)
	var gate struct {
		Verdict string `json:"verdict"`
		Source  string `json:"source"`
	}
	postJSON(b, url+"/api/v1/gates:evaluate", body, &gate)
	if gate.Source != "judged" {
		b.Fatalf("the gate answered from %q, not a judgement now", gate.Source)
	}
	if p := os.Getenv("LEVITATED_IMPACT_JUDGE_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	cpu0 := cpuNanos()
	for range b.N {
		postJSON(b, url+"/api/v1/gates:evaluate", body, &gate)
	}
	b.ReportMetric(float64(cpuNanos()-cpu0)/1e9/float64(b.N), "cpu-s/judgement")
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/judgement")
	b.ReportMetric(float64(ms1.NumGC-ms0.NumGC)/float64(b.N), "gc/judgement")
	b.ReportMetric(float64(ms1.HeapInuse>>20), "heap-MiB")
	b.Logf("verdict %s", gate.Verdict)
}
