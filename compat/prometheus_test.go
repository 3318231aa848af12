package compat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRealPrometheusSender runs the real Prometheus 3.16 binary
// (peers/prometheus.sh builds it) as a remote-write sender: it scrapes a
// small target (a counter and a classic histogram with exemplars, a gauge, a
// native histogram, a summary; units on the protobuf exposition) and itself
// every second and writes everything to levitated, with remote write 2.0
// and, in a second run, 1.0 with metadata_config. Then levitated's answers
// are compared with Prometheus' own for the same instants and ranges: raw
// samples and native histogram buckets of every series, queries,
// query_range, series, labels, label values, query_exemplars and metadata.
// Prometheus' answers are the ground truth; the only difference allowed is
// named where it is checked.
func TestRealPrometheusSender(t *testing.T) {
	bin := prometheusBinary(t)
	for _, tc := range []struct {
		name     string
		protobuf string
		features string
	}{
		// Prometheus 3 sends 2.0 metadata only with metadata-wal-records;
		// without it metadata_config is ignored (and it logs so).
		{"2.0", "io.prometheus.write.v2.Request", "exemplar-storage,metadata-wal-records"},
		{"1.0", "prometheus.WriteRequest", "exemplar-storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lev := start(t)
			target := startDemoTarget(t)
			prom := startPrometheus(t, bin, lev, target, tc.protobuf, tc.features)
			comparePrometheus(t, prom, lev, tc.name == "2.0")
		})
	}
}

// prometheusBinary builds (once, cached in ~/.cache/levitated-peers) the
// Prometheus binary with the project's script and returns its path.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("./peers/prometheus.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "peers/prometheus.sh: %s", stderr.String())
	bin := strings.TrimSpace(string(out))
	require.FileExists(t, bin)
	return bin
}

// startDemoTarget serves a registry whose metrics change at every scrape,
// in the format Prometheus negotiates (protobuf, since native histograms
// are scraped). Families named *_seconds carry the unit "seconds".
func startDemoTarget(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "demo_requests_total", Help: "Requests served.",
	}, []string{"code"})
	queue := prometheus.NewGauge(prometheus.GaugeOpts{Name: "demo_queue_depth", Help: "Items waiting."})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "demo_request_duration_seconds", Help: "Request latency.", Buckets: []float64{0.1, 0.25, 0.5, 1},
	})
	rpc := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "demo_rpc_duration_seconds", Help: "RPC latency (native histogram).",
		NativeHistogramBucketFactor: 1.1, NativeHistogramZeroThreshold: 0.001,
	})
	pauses := prometheus.NewSummary(prometheus.SummaryOpts{
		Name: "demo_pause_seconds", Help: "Pauses.", Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01},
	})
	reg.MustRegister(requests, queue, latency, rpc, pauses)
	var mu sync.Mutex
	n := 0
	gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mu.Lock()
		n++
		i := n
		trace := prometheus.Labels{"trace_id": fmt.Sprintf("%016x", i)}
		requests.WithLabelValues("200").(prometheus.ExemplarAdder).AddWithExemplar(float64(1+i%3), trace)
		requests.WithLabelValues("500").Add(float64(i % 2))
		queue.Set(float64(i % 7))
		latency.(prometheus.ExemplarObserver).ObserveWithExemplar(float64(i%10)/10, trace)
		rpc.(prometheus.ExemplarObserver).ObserveWithExemplar(float64(i%13)/7, trace)
		rpc.Observe(-float64(i%5) / 3)
		pauses.Observe(float64(i%17) / 100)
		mu.Unlock()
		mfs, err := reg.Gather()
		unit := "seconds"
		for _, mf := range mfs {
			if strings.HasSuffix(mf.GetName(), "_seconds") {
				mf.Unit = &unit
			}
		}
		return mfs, err
	})
	srv := httptest.NewServer(promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// promProcess is a running Prometheus.
type promProcess struct {
	url  string
	logs func() string
}

// startPrometheus runs Prometheus on a free loopback port with a fresh
// TSDB, scraping target and itself every second and remote-writing to
// levitated at levURL.
func startPrometheus(t *testing.T, bin, levURL, target, protobufMessage, features string) promProcess {
	t.Helper()
	addr := freeAddr(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: demo
    scrape_native_histograms: true
    static_configs: [{targets: [%q]}]
  - job_name: prometheus
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/api/v1/write
    protobuf_message: %s
    send_exemplars: true
    send_native_histograms: true
    queue_config: {batch_send_deadline: 500ms, min_backoff: 50ms, max_backoff: 1s}
    metadata_config: {send: true, send_interval: 1s}
`, target, addr, levURL, protobufMessage)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o644))
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--enable-feature="+features,
		"--log.level=warn",
	)
	var mu sync.Mutex
	var logs bytes.Buffer
	cmd.Stdout = &lockedWriter{mu: &mu, w: &logs}
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	logsOf := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logsOf())
		}
	})
	u := "http://" + addr
	for range 600 {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v\n%s", err, logsOf())
		default:
		}
		if resp, err := http.Get(u + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return promProcess{url: u, logs: logsOf}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("prometheus not ready\n%s", logsOf())
	return promProcess{}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// freeAddr is a loopback address with a port free a moment ago (Prometheus
// must know its own address to scrape itself).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// The scrape report series Prometheus 3 attaches metadata to in the WAL
// (and so sends with remote write 2.0), but lists in no target's metadata.
var reportFamilies = []string{"scrape_duration_seconds", "scrape_samples_post_metric_relabeling", "scrape_samples_scraped", "scrape_series_added", "up"}

// comparePrometheus waits until Prometheus has sent everything up to an
// instant, then compares levitated's answers with Prometheus' own.
func comparePrometheus(t *testing.T, prom promProcess, lev string, v2 bool) {
	t.Helper()
	const window = 10 * time.Second
	// Enough scrapes for rates, the window and the summary to be full.
	time.Sleep(window + 3*time.Second)
	at := time.Now().Add(-time.Second).Truncate(time.Second)
	waitSent(t, prom, at.Add(time.Second))
	from := at.Add(-window)
	ts := func(x time.Time) string { return strconv.FormatInt(x.Unix(), 10) }
	matchAll := `{job=~"demo|prometheus"}`

	type call struct {
		name, path string
		params     url.Values
	}
	calls := []call{
		// Raw samples and native histogram buckets of every series.
		{"raw samples", "/api/v1/query", url.Values{"query": {matchAll + "[" + strconv.Itoa(int(window.Seconds())) + "s]"}, "time": {ts(at)}}},
		{"instant", "/api/v1/query", url.Values{"query": {matchAll}, "time": {ts(at)}}},
		{"count", "/api/v1/query", url.Values{"query": {`count by (job) ({job=~".+"})`}, "time": {ts(at)}}},
		{"rate", "/api/v1/query_range", url.Values{"query": {`sum by (code) (rate(demo_requests_total[5s]))`}, "start": {ts(from)}, "end": {ts(at)}, "step": {"1"}}},
		{"classic quantile", "/api/v1/query_range", url.Values{"query": {`histogram_quantile(0.9, rate(demo_request_duration_seconds_bucket[5s]))`}, "start": {ts(from)}, "end": {ts(at)}, "step": {"1"}}},
		{"native quantile", "/api/v1/query_range", url.Values{"query": {`histogram_quantile(0.9, rate(demo_rpc_duration_seconds[5s]))`}, "start": {ts(from)}, "end": {ts(at)}, "step": {"1"}}},
		{"native count", "/api/v1/query", url.Values{"query": {`histogram_count(demo_rpc_duration_seconds)`}, "time": {ts(at)}}},
		{"self", "/api/v1/query", url.Values{"query": {`sum(prometheus_http_requests_total)`}, "time": {ts(at)}}},
		{"summary", "/api/v1/query", url.Values{"query": {`demo_pause_seconds`}, "time": {ts(at)}}},
		{"series", "/api/v1/series", url.Values{"match[]": {matchAll}, "start": {ts(from)}, "end": {ts(at)}}},
		{"labels", "/api/v1/labels", url.Values{"match[]": {matchAll}, "start": {ts(from)}, "end": {ts(at)}}},
		{"names", "/api/v1/label/__name__/values", url.Values{"match[]": {matchAll}, "start": {ts(from)}, "end": {ts(at)}}},
		{"exemplars", "/api/v1/query_exemplars", url.Values{"query": {`{job="demo"}`}, "start": {ts(from)}, "end": {ts(at)}}},
	}
	// Remote write is asynchronous per shard: retry the comparison for a
	// while before calling a difference a difference.
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range calls {
		for {
			want := apiData(t, prom.url, c.path, c.params)
			got := apiData(t, lev, c.path, c.params)
			if c.name == "exemplars" {
				require.NotEmpty(t, want, "Prometheus stored no exemplars")
			}
			if c.name == "raw samples" {
				requireHistograms(t, want)
			}
			if want == got {
				break
			}
			if time.Now().After(deadline) {
				// Not fatal: the run reports every difference it finds.
				assert.Equal(t, want, got, "%s %s %v: levitated (actual) differs from Prometheus (expected)", c.name, c.path, c.params)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// Metadata: all of it, one family, and the limits.
	for {
		want := metadataOf(t, prom.url, nil)
		got := metadataOf(t, lev, nil)
		require.NotEmpty(t, want)
		require.Contains(t, want, "demo_request_duration_seconds")
		if v2 {
			// Prometheus lists the report series in no target's metadata,
			// but sends theirs with 2.0: levitated serves them too.
			for _, f := range reportFamilies {
				if m, ok := got[f]; ok {
					require.Len(t, m, 1, f)
					require.Equal(t, "gauge", m[0].Type, f)
					require.NotEmpty(t, m[0].Help, f)
					delete(got, f)
				}
			}
		}
		if equalMetadata(want, got) {
			break
		}
		if time.Now().After(deadline) {
			assert.Equal(t, want, got, "/api/v1/metadata: levitated (actual) differs from Prometheus (expected)")
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	m := metadataOf(t, lev, nil)
	assert.Equal(t, []metadataEntry{{Type: "histogram", Help: "Request latency.", Unit: "seconds"}}, m["demo_request_duration_seconds"])
	assert.Equal(t, []metadataEntry{{Type: "histogram", Help: "RPC latency (native histogram).", Unit: "seconds"}}, m["demo_rpc_duration_seconds"])
	assert.Equal(t, []metadataEntry{{Type: "summary", Help: "Pauses.", Unit: "seconds"}}, m["demo_pause_seconds"])
	assert.Equal(t, []metadataEntry{{Type: "counter", Help: "Requests served.", Unit: ""}}, m["demo_requests_total"])
	assert.NotContains(t, m, "demo_request_duration_seconds_bucket")
	if v2 {
		for _, f := range reportFamilies {
			assert.Contains(t, m, f)
		}
	}
	for _, params := range []url.Values{
		{"metric": {"demo_request_duration_seconds"}},
		{"metric": {"prometheus_http_request_duration_seconds"}},
		{"metric": {"go_gc_duration_seconds"}},
		{"metric": {"demo_request_duration_seconds_bucket"}},
		{"limit_per_metric": {"1"}, "metric": {"demo_queue_depth"}},
	} {
		assert.Equal(t, metadataOf(t, prom.url, params), metadataOf(t, lev, params), "metadata %v", params)
	}
	// limit: Prometheus picks families in map order, levitated by name.
	require.Len(t, metadataOf(t, lev, url.Values{"limit": {"3"}}), 3)
	require.Len(t, metadataOf(t, prom.url, url.Values{"limit": {"3"}}), 3)

	// Nothing failed or was retried on Prometheus' side.
	metrics := promMetrics(t, prom.url)
	for _, name := range []string{
		"prometheus_remote_storage_samples_failed_total", "prometheus_remote_storage_histograms_failed_total",
		"prometheus_remote_storage_exemplars_failed_total", "prometheus_remote_storage_metadata_failed_total",
		"prometheus_remote_storage_samples_retried_total",
	} {
		for _, v := range metrics[name] {
			assert.Zero(t, v, name)
		}
	}
	require.Positive(t, sum(metrics["prometheus_remote_storage_exemplars_total"]), "no exemplars sent")
	require.Positive(t, sum(metrics["prometheus_remote_storage_histograms_total"]), "no native histograms sent")
}

func sum(vs []float64) float64 {
	s := 0.0
	for _, v := range vs {
		s += v
	}
	return s
}

// waitSent waits until Prometheus reports having sent samples at or after
// x to every remote.
func waitSent(t *testing.T, prom promProcess, x time.Time) {
	t.Helper()
	for range 600 {
		sent := promMetrics(t, prom.url)["prometheus_remote_storage_queue_highest_sent_timestamp_seconds"]
		if len(sent) > 0 && slices.Min(sent) >= float64(x.Unix()) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("prometheus did not send samples up to %v\n%s", x, prom.logs())
}

// promMetrics reads the unlabelled-aggregated values of Prometheus' own
// /metrics (text format): every sample value by metric name.
func promMetrics(t *testing.T, u string) map[string][]float64 {
	t.Helper()
	resp, err := http.Get(u + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string][]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 {
			name = line[:i]
			_, rest, _ = strings.Cut(line[strings.LastIndexByte(line, '}'):], " ")
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		require.NoError(t, err, line)
		out[name] = append(out[name], v)
	}
	require.NoError(t, sc.Err())
	return out
}

// apiData GETs an API path and returns its data, normalized: result and
// series lists sorted by their labels, so that two servers' answers compare
// as strings.
func apiData(t *testing.T, base, path string, params url.Values) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", base, path, b)
	var r struct {
		Status string `json:"status"`
		Data   any    `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	require.Equal(t, "success", r.Status, string(b))
	data := r.Data
	if m, ok := data.(map[string]any); ok {
		if res, ok := m["result"].([]any); ok {
			sortByJSON(res, "metric")
		}
	}
	if l, ok := data.([]any); ok {
		sortByJSON(l, "seriesLabels")
	}
	out, err := json.MarshalIndent(data, "", " ")
	require.NoError(t, err)
	return string(out)
}

// sortByJSON sorts a list by the JSON of each element's key (or of the
// element, for lists of label sets).
func sortByJSON(l []any, key string) {
	keyOf := func(x any) string {
		if m, ok := x.(map[string]any); ok {
			if v, ok := m[key]; ok {
				x = v
			}
		}
		b, _ := json.Marshal(x)
		return string(b)
	}
	slices.SortFunc(l, func(a, b any) int { return strings.Compare(keyOf(a), keyOf(b)) })
}

// requireHistograms fails unless a raw-samples answer holds native
// histograms with buckets: the comparison must cover them.
func requireHistograms(t *testing.T, data string) {
	t.Helper()
	require.Contains(t, data, `"histograms"`, "Prometheus stored no native histograms")
	require.Contains(t, data, `"buckets"`)
}

type metadataEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

func metadataOf(t *testing.T, base string, params url.Values) map[string][]metadataEntry {
	t.Helper()
	var out map[string][]metadataEntry
	require.NoError(t, json.Unmarshal([]byte(apiData(t, base, "/api/v1/metadata", params)), &out))
	for _, l := range out {
		slices.SortFunc(l, func(a, b metadataEntry) int {
			return strings.Compare(a.Type+"\x00"+a.Help+"\x00"+a.Unit, b.Type+"\x00"+b.Help+"\x00"+b.Unit)
		})
	}
	return out
}

func equalMetadata(a, b map[string][]metadataEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
