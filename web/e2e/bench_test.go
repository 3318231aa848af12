package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/levitated/levitated/pkg/matrixcodec"
	"github.com/levitated/levitated/pkg/server"
)

// BenchmarkConsoleGraph: from navigation to a drawn graph of 500 series ×
// 2 h at a 15 s step with 200 change windows, in Chromium. Reported: the
// whole time (ms-to-graph: the first draw with the series, or the first
// with the windows if later; the chart is then drawn on its canvases, and
// on the screen with the next frame: painted-at-ms, the page's next
// animation frame after that draw, or after the windows were placed if
// later); the API's part (api-ms: the query_range
// request, from when it left to its whole body received, from the
// browser's Resource Timing; server-ms: to its first byte); building and
// drawing the chart (draw-ms); the page's JS heap (heap-MB); and the CPU
// time of the renderer's main thread (main-cpu-ms) and of the whole
// renderer process (renderer-cpu-ms) from before the navigation to then,
// of which running script (script-ms) and layout and style
// (layout-style-ms). The parts, since the navigation: when the query
// request left (sent-at-ms; boot.js sends it), when the app asked for it
// (asked-at-ms: loading the page and the bundle, whoami, mounting the
// page), when the body was received (received-at-ms) and when the app had
// it (recv-ms: from asking to holding the whole body, which waits for the
// request and for the main thread); from the console's performance marks,
// decoding it (parse-ms), putting it on the step grid (shape-ms), and
// uPlot's constructor (build-ms), its first draw of the axes and series
// (series-ms) and placing the change windows (regions-ms). Each
// navigation's own figures are logged too.
//
//	go test -run '^$' -bench ConsoleGraph -benchtime 5x ./web/e2e (from web/e2e: ./...)
func BenchmarkConsoleGraph(b *testing.B) {
	base, page := benchGraphPage(b)

	var seriesMs, regionsMs float64
	var total, api, server, draw, heap, task, proc, script, layout, sentAt, askedAt, receivedAt, recv, parse, shape, build float64
	var paintAt, bodyAt, toWorkerAt, paintedAt float64
	for b.Loop() {
		ctx, cancel := benchBrowser(b)
		// The renderer's metrics count from Performance.enable: before
		// the navigation, on a page of the same origin (so in the same
		// renderer).
		err := chromedp.Do(ctx, chromedp.Navigate(base+"/-/healthy"))
		if err == nil {
			_, err = chromedp.Call(ctx, performance.Enable, performance.EnableParams{})
		}
		if err == nil {
			// Drawn: the chart and its windows (they may come in a
			// later draw than the series).
			err = chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`.chart[data-painted-at]`)), chromedp.WaitReady(chromedp.CSS(`.ev-layer[data-painted-at] > :nth-child(200)`)))
		}
		type result struct {
			DrawnAt, DrawMs float64
			Series, Regions int
			// The query_range request's Resource Timing.
			SentAt, ReceivedAt, API, Server float64
			// The parts, from the console's performance marks
			// (query/data.ts, chart/Chart.tsx).
			AskedAt, Recv, Parse, Shape, Build, SeriesDraw, RegionsDraw float64
			// The page's first paint; when the boot had the query's
			// headers and when it posted its body to the worker
			// (boot.ts; 0 when absent).
			PaintAt, BodyAt, ToWorkerAt float64
			// The animation frame after the first draw (Chart.tsx).
			PaintedAt float64
		}
		var m result
		if err == nil {
			m, err = chromedp.Run(ctx, chromedp.Evaluate[result](`(() => {
				const c = document.querySelector('.chart'), g = document.querySelector('[data-testid=graph]');
				const at = (n) => { const e = performance.getEntriesByName('lv:' + n, 'mark'); return e.length ? e[0].startTime : NaN; };
				const d = (a, b) => at(b) - at(a);
				const q = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/v1/query_range'));
				if (q.length !== 1) throw new Error(q.length + ' query_range requests, want 1');
				const r = q[0];
				return {drawnAt: Math.max(+c.dataset.drawnAt, +(document.querySelector('.ev-layer').dataset.placedAt ?? 0)), drawMs: +c.dataset.drawMs, series: +g.dataset.series,
					regions: document.querySelectorAll('.ev-region').length,
					sentAt: r.startTime, receivedAt: r.responseEnd, api: r.responseEnd - r.startTime, server: r.responseStart - r.startTime,
					askedAt: at('query'), recv: d('query', 'received'), parse: d('received', 'parsed'), shape: d('parsed', 'shaped'), build: d('chart', 'built'), seriesDraw: d('built', 'regions'), regionsDraw: d('regions', 'drawn'),
					paintAt: performance.getEntriesByName('first-paint')[0]?.startTime ?? 0, bodyAt: at('boot-headers') || 0, toWorkerAt: at('to-worker') || 0, paintedAt: Math.max(+c.dataset.paintedAt, +(document.querySelector('.ev-layer').dataset.paintedAt ?? 0))}; })()`))
		}
		if err == nil && (m.Series != 500 || m.Regions != 200) {
			err = fmt.Errorf("graph of %d series with %d windows, want 500 and 200", m.Series, m.Regions)
		}
		var metrics performance.GetMetricsResult
		if err == nil {
			metrics, err = chromedp.Call(ctx, performance.GetMetrics, cdp.Empty{})
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		for _, x := range metrics.Metrics {
			switch x.Name {
			case "JSHeapUsedSize":
				heap += x.Value / 1e6
			case "ThreadTime":
				// The CPU time of the renderer's main thread, in
				// seconds: the work, which a loaded machine does not
				// inflate as it does the wall times.
				task += x.Value * 1000
			case "ProcessTime":
				proc += x.Value * 1000
			case "ScriptDuration":
				script += x.Value * 1000
			case "LayoutDuration", "RecalcStyleDuration":
				layout += x.Value * 1000
			}
		}
		// Each navigation's parts: a round's means hide one slow
		// navigation of a loaded machine; medians can be taken from these.
		b.Logf("navigation: ms-to-graph %.1f sent-at %.1f received-at %.1f asked-at %.1f to-worker-at %.1f draw %.1f",
			m.DrawnAt, m.SentAt, m.ReceivedAt, m.AskedAt, m.ToWorkerAt, m.DrawMs)
		total += m.DrawnAt
		api += m.API
		server += m.Server
		draw += m.DrawMs
		sentAt += m.SentAt
		askedAt += m.AskedAt
		receivedAt += m.ReceivedAt
		recv += m.Recv
		parse += m.Parse
		shape += m.Shape
		build += m.Build
		paintAt += m.PaintAt
		bodyAt += m.BodyAt
		toWorkerAt += m.ToWorkerAt
		paintedAt += m.PaintedAt
		seriesMs += m.SeriesDraw
		regionsMs += m.RegionsDraw
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "ms-to-graph")
	b.ReportMetric(paintedAt/n, "painted-at-ms")
	b.ReportMetric(api/n, "api-ms")
	b.ReportMetric(server/n, "server-ms")
	b.ReportMetric(draw/n, "draw-ms")
	b.ReportMetric(heap/n, "heap-MB")
	b.ReportMetric(task/n, "main-cpu-ms")
	b.ReportMetric(proc/n, "renderer-cpu-ms")
	b.ReportMetric(script/n, "script-ms")
	b.ReportMetric(layout/n, "layout-style-ms")
	b.ReportMetric(sentAt/n, "sent-at-ms")
	b.ReportMetric(askedAt/n, "asked-at-ms")
	b.ReportMetric(receivedAt/n, "received-at-ms")
	b.ReportMetric(recv/n, "recv-ms")
	b.ReportMetric(parse/n, "parse-ms")
	b.ReportMetric(shape/n, "shape-ms")
	b.ReportMetric(build/n, "build-ms")
	b.ReportMetric(seriesMs/n, "series-ms")
	b.ReportMetric(regionsMs/n, "regions-ms")
	b.ReportMetric(paintAt/n, "paint-at-ms")
	b.ReportMetric(bodyAt/n, "boot-headers-at-ms")
	b.ReportMetric(toWorkerAt/n, "to-worker-at-ms")
}

// benchServer starts levitated on loopback with 500 counters
// bench_requests_total × 2 h at a 15 s step and 200 deploy windows over
// the same 2 h, ending at end.
// benchGraphPage skips b without Chromium, else starts benchServer and
// returns its base URL and the Query page that BenchmarkConsoleGraph and
// its variants open: the 500 series over the 2 h, graphed at a 15 s step.
func benchGraphPage(b *testing.B) (base, page string) {
	if env.chromium == "" {
		b.Skip("no Chromium")
	}
	base, _, end := benchServer(b)
	q := url.Values{
		"g0.expr": {`bench_requests_total`}, "g0.tab": {"graph"}, "g0.range_input": {"2h"},
		"g0.end_input": {end.UTC().Format("2006-01-02 15:04:05")}, "g0.step_input": {"15s"},
	}
	return base, base + "/query?" + q.Encode()
}

func benchServer(b *testing.B) (base string, start, end time.Time) {
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = b.TempDir()
	o.Registry = prometheus.NewRegistry()
	srv, err := server.New(o)
	if err != nil {
		b.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	b.Cleanup(func() {
		stop()
		<-done
	})
	base = "http://" + srv.Addr().String()
	if err := waitReady(base); err != nil {
		b.Fatal(err)
	}
	end = time.Now().Truncate(15 * time.Second)
	start = end.Add(-2 * time.Hour)
	if err := writeSeries(base, 500, start, end, 15*time.Second); err != nil {
		b.Fatal(err)
	}
	if err := writeWindows(base, 200, start, end); err != nil {
		b.Fatal(err)
	}
	return base, start, end
}

// BenchmarkConsoleQueryRange: the server's side of BenchmarkConsoleGraph,
// the query_range call the console makes, from Go over loopback, with and
// without gzip (which Prometheus' API applies when the client accepts it,
// as browsers do), and once from the results cache (as when the console
// asks again for the same range); in Prometheus' JSON and in levitated's
// binary matrix (pkg/matrixcodec, what the console asks for). Reported:
// the time from the request to the whole body read (answer-ms), the
// engine's time of the same evaluation (execTotalTime of stats=all, asked
// for in a separate request, outside answer-ms) and the body's bytes on
// the wire. ns/op holds both requests and decoding the answer.
//
//	go test -run '^$' -bench ConsoleQueryRange ./web/e2e (from web/e2e: ./...)
func BenchmarkConsoleQueryRange(b *testing.B) {
	base, start, end := benchServer(b)
	form := url.Values{
		"query": {"bench_requests_total"}, "start": {strconv.FormatInt(start.Unix(), 10)},
		"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"15"},
	}
	const matrix = "application/vnd.levitated.matrix" // pkg/matrixcodec
	for _, c := range []struct {
		name, accept, enc string
		cache             bool
	}{
		{"json/identity", "application/json", "identity", false},
		{"json/gzip", "application/json", "gzip", false},
		{"json/identity-cached", "application/json", "identity", true},
		{"matrix/identity", matrix, "identity", false},
		{"matrix/gzip", matrix, "gzip", false},
		// Compressed by the codec itself (what the console asks for).
		{"matrix+gzip/identity", matrix + "+gzip", "identity", false},
	} {
		enc := c.enc
		form := maps.Clone(form)
		if !c.cache {
			form.Set("nocache", "1") // pkg/resultscache is bypassed
		}
		b.Run(c.name, func(b *testing.B) {
			var engine, wire, answer float64
			for b.Loop() {
				t0 := time.Now()
				req, err := http.NewRequest(http.MethodPost, base+"/api/v1/query_range", strings.NewReader(form.Encode()))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Accept", c.accept)
				// Set explicitly, so that Go's transport does not add
				// gzip and decode it itself.
				req.Header.Set("Accept-Encoding", enc)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("query_range: %v %s", err, resp.Status)
				}
				answer += float64(time.Since(t0).Microseconds()) / 1000
				wire += float64(len(raw))
				body := raw
				if resp.Header.Get("Content-Encoding") == "gzip" {
					zr, err := gzip.NewReader(bytes.NewReader(raw))
					if err == nil {
						body, err = io.ReadAll(zr)
					}
					if err != nil {
						b.Fatal(err)
					}
				} else if enc == "gzip" {
					b.Fatal("asked for gzip, got none")
				}
				if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, c.accept) {
					b.Fatalf("asked for %s, got %s", c.accept, got)
				}
				if strings.HasSuffix(c.accept, "+gzip") {
					zr, err := gzip.NewReader(bytes.NewReader(body))
					if err == nil {
						body, err = io.ReadAll(zr)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				series := 0
				if strings.HasPrefix(c.accept, matrix) {
					_, ss, err := matrixcodec.Decode(body)
					if err != nil {
						b.Fatal(err)
					}
					series = len(ss)
				} else {
					var r struct {
						Data struct {
							Result []json.RawMessage
						}
					}
					if err := json.Unmarshal(body, &r); err != nil {
						b.Fatal(err)
					}
					series = len(r.Data.Result)
				}
				if series != 500 {
					b.Fatalf("%d series, want 500", series)
				}
				// The engine's time of the same evaluation, separately
				// (the binary answer carries no stats).
				if !c.cache {
					t, err := engineTime(base, form)
					if err != nil {
						b.Fatal(err)
					}
					engine += t
				}
			}
			n := float64(b.N)
			b.ReportMetric(answer/n, "answer-ms")
			b.ReportMetric(engine/n, "engine-ms")
			b.ReportMetric(wire/n/1e6, "wire-MB")
		})
	}
}

// engineTime evaluates form's query once more with stats=all and returns
// the engine's execTotalTime in milliseconds.
func engineTime(base string, form url.Values) (float64, error) {
	form = maps.Clone(form)
	form.Set("stats", "all")
	form.Set("nocache", "1")
	var r struct {
		Data struct {
			Stats struct {
				Timings struct{ ExecTotalTime float64 }
			}
		}
	}
	if err := call(http.MethodGet, base+"/api/v1/query_range?"+form.Encode(), "", &r); err != nil {
		return 0, err
	}
	return r.Data.Stats.Timings.ExecTotalTime * 1000, nil
}

// benchBrowser is browser() for a benchmark: a fresh profile per tab, so
// that nothing is cached between iterations.
func benchBrowser(b *testing.B) (context.Context, context.CancelFunc) {
	// Start the browser outside the measured navigation.
	ctx, cancel, err := startBrowser(b.TempDir, 1280, 800, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	return ctx, cancel
}

// writeSeries remote-writes n counters bench_requests_total{pod=…} from
// start to end every step, 50 series a request.
func writeSeries(base string, n int, start, end time.Time, step time.Duration) error {
	for first := 0; first < n; first += 50 {
		var req prompb.WriteRequest
		for i := first; i < min(first+50, n); i++ {
			ts := prompb.TimeSeries{Labels: []prompb.Label{
				{Name: "__name__", Value: "bench_requests_total"}, {Name: "job", Value: "bench"}, {Name: "pod", Value: fmt.Sprintf("pod-%03d", i)},
			}}
			v := 0.0
			for t := start; !t.After(end); t = t.Add(step) {
				v += float64(10 + i%7)
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: v})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		raw, err := req.Marshal()
		if err != nil {
			return err
		}
		hr, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
		if err != nil {
			return err
		}
		hr.Header.Set("Content-Encoding", "snappy")
		hr.Header.Set("Content-Type", "application/x-protobuf")
		hr.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("remote write: %s", resp.Status)
		}
	}
	return nil
}

// writeWindows posts n deploy windows spread over [start, end], in
// batches of start and stop events.
func writeWindows(base string, n int, start, end time.Time) error {
	gap := end.Sub(start) / time.Duration(n)
	for first := 0; first < n; first += 250 {
		var evs []string
		for i := first; i < min(first+250, n); i++ {
			t0 := start.Add(time.Duration(i) * gap)
			attrs := `{"service":"svc-` + strconv.Itoa(i%10) + `","run":"` + strconv.Itoa(i) + `"}`
			evs = append(evs,
				fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":%s}`, t0.UTC().Format(time.RFC3339), attrs),
				fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":%s}`, t0.Add(gap/2).UTC().Format(time.RFC3339), attrs))
		}
		if err := call(http.MethodPost, base+"/api/v1/events:batch", `{"events":[`+strings.Join(evs, ",")+`]}`, nil); err != nil {
			return err
		}
	}
	return nil
}
