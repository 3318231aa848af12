package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/levitated/levitated/bench/redgen"
	"github.com/levitated/levitated/pkg/server"
)

// BenchmarkImpactCost measures what automatic change judgement costs
// (issue 17, point 4) on a real server holding redgen's series: 20 minutes
// of history appended first, then every series remote-written live (one
// sample each per 15 s, a fifteenth of them every second, in requests of
// 1,000 series). For a baseline period nothing is judged; then 1,000
// changes (5-minute deploy windows of the 20 services, their stops within
// the last minute) are posted at once and the scheduler (pkg/impact, the
// default signals, delay 1s) judges them all while the writes go on. It
// reports the time until every change is judged, the process's CPU (server
// and the benchmark's writer; the writer alone is the baseline period's),
// its peak RSS and Go heap, and the remote-write latency (p50, p99, max)
// without and with judgements running, in one run.
//
//	go test ./bench -run '^$' -bench BenchmarkImpactCost -benchtime 1x -timeout 90m
//
// LEVITATED_IMPACT_COST_SERIES (default 100000), LEVITATED_IMPACT_COST_CHANGES
// (default 1000), LEVITATED_IMPACT_COST_BASELINE (default 90s),
// LEVITATED_IMPACT_COST_WORKERS (--impact.workers, default the server's),
// LEVITATED_IMPACT_COST_SHARE (--impact.cpu-share, default the server's),
// LEVITATED_IMPACT_COST_CPUPROFILE (a CPU profile of the judging phase),
// LEVITATED_IMPACT_COST_RESULTS_CACHE=0 (no results cache: neighbouring
// changes of a service share no evaluation).
func BenchmarkImpactCost(b *testing.B) {
	nSeries, nChanges, baseline := 100_000, 1000, 90*time.Second
	if v := os.Getenv("LEVITATED_IMPACT_COST_SERIES"); v != "" {
		nSeries, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("LEVITATED_IMPACT_COST_CHANGES"); v != "" {
		nChanges, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("LEVITATED_IMPACT_COST_BASELINE"); v != "" {
		baseline, _ = time.ParseDuration(v)
	}
	cfg := filepath.Join(b.TempDir(), "impact.yml")
	if err := os.WriteFile(cfg, []byte("events: {delay: 1s}\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = b.TempDir()
	reg := prometheus.NewRegistry()
	o.Registry = reg
	o.Storage.OutOfOrderWindow = 2 * time.Hour
	o.Impact.ConfigFile = cfg
	o.Impact.Interval = time.Second
	if v := os.Getenv("LEVITATED_IMPACT_COST_WORKERS"); v != "" {
		o.Impact.Workers, _ = strconv.Atoi(v)
	}
	if os.Getenv("LEVITATED_IMPACT_COST_RESULTS_CACHE") == "0" {
		o.QueryResultsCacheBytes = 0 // every judgement evaluates its queries
	}
	if v := os.Getenv("LEVITATED_IMPACT_COST_SHARE"); v != "" {
		o.Impact.CPUShare, _ = strconv.ParseFloat(v, 64)
	}
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

	// History: 20 minutes at 15 s, appended directly.
	series := redgen.Build(nSeries)
	const scrape = 15 * time.Second
	const histSteps = 80
	now := time.Now().Truncate(scrape)
	t0 := now.Add(-histSteps * scrape)
	db := srv.DB()
	loadStart := time.Now()
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
	fmt.Printf("history: %d series × %d steps appended in %s\n", len(series), histSteps, time.Since(loadStart).Round(time.Second))

	// Live remote-write: every second a fifteenth of the series, one sample
	// each, in requests of 1,000 series; each request's latency is kept
	// with the phase it started in.
	protoLabels := make([][]prompb.Label, len(series))
	for i, s := range series {
		s.Labels.Range(func(l labels.Label) {
			protoLabels[i] = append(protoLabels[i], prompb.Label{Name: l.Name, Value: l.Value})
		})
	}
	var (
		mu      sync.Mutex
		phase   = 0
		lat     = [2][]time.Duration{}
		wfailed int
	)
	writerCtx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 30 * time.Second}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		steps := make([]int64, len(series))
		for i := range steps {
			steps[i] = histSteps
		}
		for k := 0; ; k++ {
			select {
			case <-writerCtx.Done():
				return
			case <-tick.C:
			}
			ts := time.Now().UnixMilli()
			slice := k % 15
			var batch []prompb.TimeSeries
			flush := func() {
				if len(batch) == 0 {
					return
				}
				body, err := (&prompb.WriteRequest{Timeseries: batch}).Marshal()
				if err != nil {
					b.Error(err)
					return
				}
				req, _ := http.NewRequestWithContext(writerCtx, http.MethodPost, url+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
				mu.Lock()
				p := phase
				mu.Unlock()
				start := time.Now()
				resp, err := client.Do(req)
				d := time.Since(start)
				batch = batch[:0]
				if err != nil {
					if writerCtx.Err() == nil {
						mu.Lock()
						wfailed++
						mu.Unlock()
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
					wfailed++
				} else {
					lat[p] = append(lat[p], d)
				}
				mu.Unlock()
			}
			for i := slice; i < len(series); i += 15 {
				v := series[i].Next(steps[i])
				steps[i]++
				batch = append(batch, prompb.TimeSeries{Labels: protoLabels[i], Samples: []prompb.Sample{{Timestamp: ts, Value: v}}})
				if len(batch) == 1000 {
					flush()
				}
			}
			flush()
		}
	})
	defer func() {
		stopWriter()
		wg.Wait()
	}()

	// Baseline: writes only.
	cpu0, wall0 := cpuNanos(), time.Now()
	time.Sleep(baseline)
	cpuA, wallA := cpuNanos()-cpu0, time.Since(wall0)
	rssA := rssKiB("VmRSS")

	// The changes: deploy windows of 5 minutes whose stops fall within the
	// last minute, posted at once.
	var services []string
	for _, s := range series {
		if v := s.Labels.Get("service"); !slices.Contains(services, v) {
			services = append(services, v)
		}
	}
	stopBase := time.Now().Add(-time.Minute)
	var evs []string
	for i := range nChanges {
		stop := stopBase.Add(time.Duration(i) * time.Minute / time.Duration(nChanges))
		attrs := fmt.Sprintf(`{"service":%q,"change":"c%d"}`, services[i%len(services)], i)
		evs = append(evs,
			fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":%s}`, stop.Add(-5*time.Minute).Format(time.RFC3339Nano), attrs),
			fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":%s}`, stop.Format(time.RFC3339Nano), attrs))
	}
	mu.Lock()
	phase = 1
	mu.Unlock()
	runtime.GC()
	if p := os.Getenv("LEVITATED_IMPACT_COST_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	cpu1, wall1 := cpuNanos(), time.Now()
	for len(evs) > 0 {
		k := min(len(evs), 1000)
		var out struct{}
		postJSON(b, url+"/api/v1/events:batch", `{"events":[`+strings.Join(evs[:k], ",")+`]}`, &out)
		evs = evs[k:]
	}
	posted := time.Since(wall1)
	counters := func(name string) map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] += m.GetCounter().GetValue()
			}
		}
		return out
	}
	judged := func() (map[string]float64, float64) {
		byVerdict, sum := counters("levitated_impact_judgements_total"), 0.0
		for _, v := range byVerdict {
			sum += v
		}
		return byVerdict, sum
	}
	var peakRSS int64
	deadline := time.Now().Add(60 * time.Minute)
	var verdicts map[string]float64
	var n float64
	var firstDone time.Duration
	progress := time.Now()
	for {
		verdicts, n = judged()
		peakRSS = max(peakRSS, rssKiB("VmRSS"))
		if n >= float64(nChanges) || time.Now().After(deadline) {
			break
		}
		if n > 0 && firstDone == 0 {
			firstDone = time.Since(wall1)
		}
		if time.Since(progress) > time.Minute {
			fmt.Printf("… %.0f of %d judged after %s\n", n, nChanges, time.Since(wall1).Round(time.Second))
			progress = time.Now()
		}
		time.Sleep(500 * time.Millisecond)
	}
	cpuB, wallB := cpuNanos()-cpu1, time.Since(wall1)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	stopWriter()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	q := func(d []time.Duration, p float64) string {
		if len(d) == 0 {
			return "–"
		}
		s := slices.Clone(d)
		slices.Sort(s)
		return fmt.Sprintf("%.1f", float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds())/1000)
	}
	b.ReportMetric(float64(nChanges)/wallB.Seconds(), "changes/s")
	fmt.Printf("%d series, %d workers, %d changes posted in %s; %.0f judged in %s (%.2f changes/s; first after %s): %v\n",
		len(series), o.Impact.Workers, nChanges, posted.Round(time.Millisecond), n, wallB.Round(time.Second), n/wallB.Seconds(), firstDone.Round(time.Millisecond), verdicts)
	fmt.Printf("| phase | wall s | process CPU s | CPU cores | peak RSS MiB | remote-write requests | p50 ms | p99 ms | max ms | failed |\n|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Printf("| writes only | %.0f | %.1f | %.2f | %d (at end) | %d | %s | %s | %s | |\n", wallA.Seconds(), float64(cpuA)/1e9, float64(cpuA)/1e9/wallA.Seconds(), rssA/1024, len(lat[0]), q(lat[0], 0.5), q(lat[0], 0.99), q(lat[0], 1))
	fmt.Printf("| writes + judging | %.0f | %.1f | %.2f | %d | %d | %s | %s | %s | %d |\n", wallB.Seconds(), float64(cpuB)/1e9, float64(cpuB)/1e9/wallB.Seconds(), peakRSS/1024, len(lat[1]), q(lat[1], 0.5), q(lat[1], 0.99), q(lat[1], 1), wfailed)
	fmt.Printf("peak RSS of the process (VmHWM, history load included) %d MiB; Go heap in use at the end %d MiB\n", rssKiB("VmHWM")/1024, ms.HeapInuse>>20)
	paced := counters("levitated_impact_query_seconds_total")
	fmt.Printf("the scheduler's queries: ran %.1f s, rested %.1f s, waited for write requests %.1f s (--impact.cpu-share %g)\n\n", paced["ran"], paced["rested"], paced["waited"], o.Impact.CPUShare)
	if n < float64(nChanges) {
		b.Errorf("only %.0f of %d changes judged within the deadline", n, nChanges)
	}
}

// rssKiB reads a field (VmRSS, VmHWM) of /proc/self/status in KiB.
func rssKiB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return 0
}
