package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/bench/redgen"
	"github.com/levitated/levitated/pkg/server"
)

// The canary-judge benchmarks judge 20 metrics of a canary instance of the
// checkout service against a baseline instance, each over the same hour at
// 10 s steps, on a real server (HTTP on 127.0.0.1, store in b.TempDir())
// holding 100k series (redgen, a sample every 15 s for 70 minutes, flushed
// to Pebble). Each judgement is one request through the API, end to end:
// the native POST /api/v1/analysis over the latest canary-step window
// (synchronous), or Kayenta's POST /canary/{configId} then GET
// /canary/{id} until complete (asynchronous; server time is the
// execution's endTime - startTime). LEVITATED_BENCH_SERIES overrides the
// number of series.

const (
	judgeSpan     = time.Hour
	judgeWritten  = judgeSpan + 10*time.Minute
	judgeInterval = 15 * time.Second
)

// The 20 metrics, as PromQL over redgen's series; the side's matchers are
// added to every selector (native) or put in ${scope} (Kayenta).
var judgeMetrics = []struct{ name, query string }{
	{"error-ratio", `sum(rate(http_requests_total{code="500"}[1m])) / sum(rate(http_requests_total[1m]))`},
	{"requests", `sum(rate(http_requests_total[1m]))`},
	{"latency-p50", `histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))`},
	{"latency-p90", `histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))`},
	{"latency-p99", `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))`},
	{"latency-avg", `sum(rate(http_request_duration_seconds_sum[1m])) / sum(rate(http_request_duration_seconds_count[1m]))`},
	{"route-0", `sum(rate(http_requests_total{route="/api/0"}[1m]))`},
	{"route-1", `sum(rate(http_requests_total{route="/api/1"}[1m]))`},
	{"route-2", `sum(rate(http_requests_total{route="/api/2"}[1m]))`},
	{"route-3", `sum(rate(http_requests_total{route="/api/3"}[1m]))`},
	{"route-4", `sum(rate(http_requests_total{route="/api/4"}[1m]))`},
	{"get", `sum(rate(http_requests_total{method="GET"}[1m]))`},
	{"post", `sum(rate(http_requests_total{method="POST"}[1m]))`},
	{"cpu", `sum(rate(node_cpu_seconds_total{mode!="idle"}[1m]))`},
	{"cpu-usage", `avg(cpu_usage_ratio)`},
	{"goroutines", `max(go_goroutines)`},
	{"open-fds", `max(process_open_fds)`},
	{"in-flight", `max(http_requests_in_flight)`},
	{"load", `max(node_load1)`},
	{"memory", `max(process_resident_memory_bytes)`},
}

type judgeEnv struct {
	url              string
	baseline, canary string // instance label values of two checkout instances
	end              time.Time
	nSeries          int
	configID         string
}

func newJudgeEnv(b *testing.B) *judgeEnv {
	b.Helper()
	n := 100_000
	if v := os.Getenv("LEVITATED_BENCH_SERIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = b.TempDir()
	o.Registry = prometheus.NewRegistry()
	srv, err := server.New(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})

	// Series by series, all steps of each: one commit per 100k samples.
	end := time.Now().Truncate(time.Minute)
	begin := end.Add(-judgeWritten)
	steps := int64(judgeWritten/judgeInterval) + 1
	db := srv.DB()
	app := db.AppenderV2(ctx)
	pending := 0
	for _, s := range redgen.Build(n) {
		var ref promstorage.SeriesRef
		for step := range steps {
			t := begin.Add(time.Duration(step) * judgeInterval).UnixMilli()
			if ref, err = app.Append(ref, s.Labels, 0, t, s.Next(step), nil, nil, promstorage.AOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		if pending += int(steps); pending >= 100_000 {
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
			app, pending = db.AppenderV2(ctx), 0
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(ctx); err != nil {
		b.Fatal(err)
	}

	// The canary step, and the same window of two other services.
	e := &judgeEnv{url: "http://" + srv.Addr().String(), baseline: "10.1.0.1:8080", canary: "10.1.0.21:8080", end: end, nSeries: n}
	var evs []string
	for _, svc := range []string{"cart", "users", "checkout"} {
		for _, st := range []struct {
			state string
			t     time.Time
		}{{"start", end.Add(-judgeSpan)}, {"stop", end}} {
			evs = append(evs, fmt.Sprintf(`{"name":"canary-step","state":%q,"timestamp":%d,"attributes":{"service":%q}}`, st.state, st.t.Unix(), svc))
		}
	}
	var stored map[string]any
	e.post(b, "/api/v1/events:batch", `{"events":[`+strings.Join(evs, ",")+`]}`, &stored)

	// Instances 0 and 20 both serve checkout (redgen cycles 20 services).
	e.configID = e.createKayentaConfig(b)
	return e
}

func (e *judgeEnv) nativeRequest() string {
	var ms []string
	for _, m := range judgeMetrics {
		ms = append(ms, fmt.Sprintf(`{"name": %q, "query": %q}`, m.name, m.query))
	}
	return fmt.Sprintf(`{"baseline": %q, "canary": %q, "step": "10s",
	  "window": {"event": "canary-step", "match": ["service=\"checkout\""]},
	  "metrics": [%s]}`,
		fmt.Sprintf(`service="checkout", instance=%q`, e.baseline), fmt.Sprintf(`service="checkout", instance=%q`, e.canary),
		strings.Join(ms, ",\n"))
}

func (e *judgeEnv) createKayentaConfig(b *testing.B) string {
	var ms []string
	for _, m := range judgeMetrics {
		// The scope's matchers in every selector, as Kayenta users write them.
		q := strings.NewReplacer(
			`http_requests_total{`, `http_requests_total{service="checkout",instance="${scope}",`,
			`http_requests_total[`, `http_requests_total{service="checkout",instance="${scope}"}[`,
			`_bucket[`, `_bucket{service="checkout",instance="${scope}"}[`,
			`_sum[`, `_sum{service="checkout",instance="${scope}"}[`,
			`_count[`, `_count{service="checkout",instance="${scope}"}[`,
			`node_cpu_seconds_total{`, `node_cpu_seconds_total{service="checkout",instance="${scope}",`,
		).Replace(m.query)
		for _, g := range []string{"cpu_usage_ratio", "go_goroutines", "process_open_fds", "http_requests_in_flight", "node_load1", "process_resident_memory_bytes"} {
			q = strings.Replace(q, "("+g+")", "("+g+`{service="checkout",instance="${scope}"})`, 1)
		}
		ms = append(ms, fmt.Sprintf(`{"name": %q, "scopeName": "default", "groups": [%q], "query": {"type": "prometheus", "customInlineTemplate": %q}}`,
			m.name, m.name, "PromQL:"+q))
	}
	body := fmt.Sprintf(`{"name": "checkout", "applications": ["checkout"], "metrics": [%s], "classifier": {"groupWeights": {}}}`, strings.Join(ms, ","))
	var out struct{ CanaryConfigID string }
	e.post(b, "/canaryConfig", body, &out)
	return out.CanaryConfigID
}

func (e *judgeEnv) kayentaRequest() string {
	sc := func(s string) string {
		return fmt.Sprintf(`{"scope":%q,"location":"","step":10,"start":%q,"end":%q}`, s,
			e.end.Add(-judgeSpan).Format(time.RFC3339), e.end.Format(time.RFC3339))
	}
	return fmt.Sprintf(`{"scopes":{"default":{"controlScope":%s,"experimentScope":%s}},"thresholds":{"pass":95,"marginal":75}}`, sc(e.baseline), sc(e.canary))
}

func (e *judgeEnv) post(tb testing.TB, path, body string, out any) {
	resp, err := http.Post(e.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		tb.Fatal(err)
	}
}

// judgeNative runs one native judgement and checks its answer.
func (e *judgeEnv) judgeNative(client *http.Client, body string) error {
	resp, err := client.Post(e.url+"/api/v1/analysis", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.400s", resp.StatusCode, b)
	}
	var out struct {
		Verdict string
		Metrics []struct{ Classification string }
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return err
	}
	if out.Verdict == "" || len(out.Metrics) != len(judgeMetrics) {
		return fmt.Errorf("answer without a verdict for %d metrics: %.400s", len(judgeMetrics), b)
	}
	for _, m := range out.Metrics {
		if m.Classification == "Nodata" {
			return fmt.Errorf("a metric without data: %.400s", b)
		}
	}
	return nil
}

func reportLatencies(b *testing.B, name string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	q := func(p float64) float64 { return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / 1e6 }
	b.ReportMetric(q(0.5), name+"-p50-ms")
	b.ReportMetric(q(0.99), name+"-p99-ms")
}

func BenchmarkCanaryJudge(b *testing.B) {
	e := newJudgeEnv(b)
	prefix := fmt.Sprintf("metrics=%d,series=%d,steps=%d", len(judgeMetrics), e.nSeries, int(judgeSpan/(10*time.Second)))

	b.Run("api=native,"+prefix+",clients=1", func(b *testing.B) {
		body := e.nativeRequest()
		client := &http.Client{}
		var lat []time.Duration
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			if err := e.judgeNative(client, body); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		reportLatencies(b, "judgement", lat)
	})

	b.Run("api=native,"+prefix+",clients=100", func(b *testing.B) {
		body := e.nativeRequest()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
		var lat []time.Duration
		var mu sync.Mutex
		var judged int
		start := time.Now()
		for b.Loop() {
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for range 100 {
				wg.Go(func() {
					t0 := time.Now()
					err := e.judgeNative(client, body)
					d := time.Since(t0)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					lat = append(lat, d)
					judged++
					mu.Unlock()
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err) // every one of the 100 concurrent judgements must succeed
			}
		}
		b.ReportMetric(float64(judged)/time.Since(start).Seconds(), "judgements/s")
		reportLatencies(b, "judgement", lat)
	})

	b.Run("api=kayenta,"+prefix+",clients=1", func(b *testing.B) {
		body := e.kayentaRequest()
		var server, total []time.Duration
		for b.Loop() {
			t0 := time.Now()
			var started struct{ CanaryExecutionID string }
			e.post(b, "/canary/"+e.configID, body, &started)
			for {
				resp, err := http.Get(e.url + "/canary/" + started.CanaryExecutionID)
				if err != nil {
					b.Fatal(err)
				}
				var st struct {
					Complete                       bool
					Status                         string
					StartTimeMillis, EndTimeMillis int64
					Exception                      any
					Result                         struct{ JudgeResult struct{ Results []any } }
				}
				err = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
				if st.Complete {
					if st.Status != "succeeded" || len(st.Result.JudgeResult.Results) != len(judgeMetrics) {
						b.Fatalf("execution %s: %s %v", started.CanaryExecutionID, st.Status, st.Exception)
					}
					server = append(server, time.Duration(st.EndTimeMillis-st.StartTimeMillis)*time.Millisecond)
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			total = append(total, time.Since(t0))
		}
		reportLatencies(b, "server", server)
		reportLatencies(b, "until-complete", total)
	})
}
