package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/otel"

	"github.com/levitated/levitated/pkg/memlimit"
	"github.com/levitated/levitated/pkg/notrace"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// BenchmarkRequestCost is the fixed cost of a small range query request:
// the real server on loopback answers POST /api/v1/query_range over 2 h
// at 60 s steps with nocache=1, the way ../shared/peer-bench's query pass
// and bench/smallq ask (form body, gzip accepted, a kept-alive
// connection), for
//   - vector(1): no series read — the cost of the request alone (net/http,
//     the middleware chain, Prometheus' API, the engine's set-up and
//     evaluation, JSON, gzip);
//   - one_series_raw and one_series_rate: peer-bench's two single-series
//     queries over a store holding that series (480 samples, flushed).
//
// The "client" case is the same client against a loopback server that
// answers every request with vector(1)'s gzipped answer and does nothing
// else: what the client and the loopback cost, to take from the others.
// Reported per request, for the whole process (client and server run in
// it): ns/op, B/op and allocs/op (b.ReportAllocs, all goroutines),
// cpu-us/op (the process' user+system CPU) and gc/kop (collections per
// 1,000 requests). Allocations are the steady figure on a shared
// machine; they set how often the collector runs (the collector's percent
// is the server's default, memlimit.DefaultGCPercent, for the run, as
// cmd/levitated sets it).
func BenchmarkRequestCost(b *testing.B) {
	// As cmd/levitated: no spans are exported, and the global tracer
	// would otherwise allocate a span per call.
	otel.SetTracerProvider(notrace.TracerProvider{})
	srv := servertest.Start(b)
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-2 * time.Hour)
	ls := labels.FromStrings("__name__", "http_requests_total", "instance", "10.1.0.1:8080", "method", "GET", "route", "/", "status", "200", "job", "api")
	app := srv.DB().Appender(context.Background())
	var ref promstorage.SeriesRef
	for i := range 481 {
		var err error
		t := start.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
		if ref, err = app.Append(ref, ls, t, float64(i*7)); err != nil {
			b.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	if err := srv.DB().Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(memlimit.DefaultGCPercent))

	form := func(q string) string {
		return url.Values{
			"query": {q}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)},
			"step": {"60"}, "nocache": {"1"},
		}.Encode()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	ask := func(b *testing.B, base, body string) int {
		req, err := http.NewRequest(http.MethodPost, base+"/api/v1/query_range", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
		}
		return int(n)
	}

	// The canned answer of the "client" case: vector(1)'s, gzipped.
	canned := func() []byte {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/query_range", strings.NewReader(form("vector(1)")))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req) // decompressed by the transport
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Contains(raw, []byte(`"status":"success"`)) {
			b.Fatalf("vector(1): %v %s", err, raw)
		}
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		return z.Bytes()
	}()
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(canned)
	}))
	b.Cleanup(echo.Close)

	for _, c := range []struct{ name, base, query string }{
		{"client", echo.URL, "vector(1)"},
		{"vector1", srv.URL, "vector(1)"},
		{"one_series_raw", srv.URL, `http_requests_total{instance="10.1.0.1:8080",method="GET",route="/",status="200"}`},
		{"one_series_rate", srv.URL, `rate(http_requests_total{instance="10.1.0.1:8080",method="GET",route="/",status="200"}[5m])`},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := form(c.query)
			if n := ask(b, c.base, body); n == 0 {
				b.Fatal("empty answer")
			}
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			g0 := goroutinesCreated()
			cpu0 := cpuNanos()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ask(b, c.base, body)
			}
			b.StopTimer()
			cpu := cpuNanos() - cpu0
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(ms1.NumGC-ms0.NumGC)*1000/float64(b.N), "gc/kop")
			b.ReportMetric(float64(goroutinesCreated()-g0)/float64(b.N), "goroutines/op")
		})
	}
}

// goroutinesCreated is the number of goroutines the process has started.
// Each one a request starts can wake an idle processor (a futex wake on
// another core), which a sequential client waits for.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
