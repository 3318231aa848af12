package compat

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
)

// The real Thanos v0.42.5 against levitated's StoreAPI (issue 19): a Thanos
// Querier over three levitated nodes (an HA pair with replica=a|b holding
// the same data, and a third with other services) answers a PromQL
// compliance-style query set exactly as one levitated holding all the data;
// killing one replica changes no answer; a thanos sidecar in front of a
// levitated becomes ready and serves the same series.

// thanosBinary builds Thanos with the project's script (cached in
// ~/.cache/levitated-peers; .ci/run builds it before the tests).
func thanosBinary(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", "peers/build-thanos.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "build Thanos: %s", stderr.String())
	return strings.TrimSpace(string(out))
}

// node is a levitated binary of the fleet.
type node struct {
	url string
	cmd *exec.Cmd
}

func startNode(t *testing.T, flags ...string) *node {
	t.Helper()
	u, cmd := startProcess(t, flags...)
	return &node{url: u, cmd: cmd}
}

// stop ends the node with SIGTERM (the cleanup checks that it exits 0)
// and waits until it no longer answers.
func (n *node) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, n.cmd.Process.Signal(syscall.SIGTERM))
	for range 600 {
		resp, err := http.Get(n.url + "/-/healthy")
		if err != nil {
			return
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("levitated at %s still answers after SIGTERM", n.url)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// runThanos starts a Thanos component with args, logging into a buffer
// shown on failure; it is stopped with SIGTERM at cleanup.
func runThanos(t *testing.T, bin string, args ...string) *bytes.Buffer {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var mu sync.Mutex
	logs := &bytes.Buffer{}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); pw.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("thanos %s:\n%s", args[0], logs.String())
			mu.Unlock()
		}
	})
	return logs
}

// fleetSeries is one series of the test fleet: its labels and a value
// per step.
type fleetSeries struct {
	labels [][2]string
	value  func(i int) float64
}

// fleetData is what each cluster's services expose: request counters by
// code, a classic latency histogram, up and a memory gauge; cluster c2
// also has a queue.
func fleetData(cluster string) []fleetSeries {
	job := map[string]string{"c1": "api", "c2": "db"}[cluster]
	seed := map[string]float64{"c1": 1, "c2": 3}[cluster]
	var out []fleetSeries
	for n, inst := range []string{"i1", "i2"} {
		f := float64(n+1) * seed
		out = append(out,
			fleetSeries{[][2]string{{"__name__", "http_requests_total"}, {"code", "200"}, {"instance", inst}, {"job", job}},
				func(i int) float64 { return f * float64(10*i) }},
			fleetSeries{[][2]string{{"__name__", "http_requests_total"}, {"code", "500"}, {"instance", inst}, {"job", job}},
				func(i int) float64 { return math.Floor(f * float64(i*i) / 40) }},
			fleetSeries{[][2]string{{"__name__", "up"}, {"instance", inst}, {"job", job}},
				func(i int) float64 {
					if cluster == "c2" && (i/60+n)%2 == 1 {
						return 0 // c2's instances take turns being down
					}
					return 1
				}},
			fleetSeries{[][2]string{{"__name__", "node_memory_bytes"}, {"instance", inst}, {"job", job}},
				func(i int) float64 { return 1e6*f + float64(i%17)*1000*f }},
		)
		for k, le := range []string{"0.1", "0.5", "1", "+Inf"} {
			out = append(out, fleetSeries{[][2]string{{"__name__", "http_request_duration_seconds_bucket"}, {"instance", inst}, {"job", job}, {"le", le}},
				func(i int) float64 { return float64(i)*f*float64(k+1) + float64(i/3*k) }})
		}
	}
	if cluster == "c2" {
		out = append(out, fleetSeries{[][2]string{{"__name__", "queue_depth"}, {"job", job}, {"queue", "q1"}},
			func(i int) float64 { return float64(i%23) * 1.5 }})
	}
	return out
}

// writeFleet remote-writes the series at the steps to u, with extra
// labels added (the reference node stores the cluster as a label).
func writeFleet(t *testing.T, u string, series []fleetSeries, steps []time.Time, extra ...[2]string) {
	t.Helper()
	var body []byte
	for _, s := range series {
		ls := append(slices.Clone(s.labels), extra...)
		sort.Slice(ls, func(i, j int) bool { return ls[i][0] < ls[j][0] })
		var samples []byte
		for i, ts := range steps {
			samples = appendSample(samples, 2, s.value(i), ts.UnixMilli())
		}
		body = appendTimeSeries(body, ls, samples)
	}
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, string(b))
}

// promResult is a Prometheus API answer, reduced to what is compared.
type promResult struct {
	Status   string   `json:"status"`
	Error    string   `json:"error"`
	Warnings []string `json:"warnings"`
	Data     struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

func apiGet(t *testing.T, base, path string, params url.Values) (promResult, string) {
	t.Helper()
	resp, err := http.Get(base + path + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var r promResult
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	require.Equal(t, "success", r.Status, "%s %v: %s", path, params, b)
	return r, string(b)
}

// canonical maps each series (labels as a string) to its points, for a
// comparison independent of series order.
func canonical(r promResult) map[string][][2]string {
	out := map[string][][2]string{}
	for _, s := range r.Data.Result {
		keys := make([]string, 0, len(s.Metric))
		for k := range s.Metric {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var sb strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&sb, "%s=%q,", k, s.Metric[k])
		}
		points := s.Values
		if r.Data.ResultType == "vector" {
			points = [][2]any{s.Value}
		}
		var ps [][2]string
		for _, p := range points {
			ps = append(ps, [2]string{fmt.Sprint(p[0]), fmt.Sprint(p[1])})
		}
		out[sb.String()] = ps
	}
	return out
}

// requireSameResult compares two answers series by series; values may
// differ in the last bits (sums run in another order through Thanos).
func requireSameResult(t *testing.T, what string, want, got promResult) {
	t.Helper()
	require.Equal(t, want.Data.ResultType, got.Data.ResultType, what)
	w, g := canonical(want), canonical(got)
	require.Equal(t, slices.Sorted(mapKeys(w)), slices.Sorted(mapKeys(g)), "%s: the series differ", what)
	require.NotEmpty(t, w, "%s: the reference answered nothing; the query tests nothing", what)
	for k, wp := range w {
		gp := g[k]
		require.Len(t, gp, len(wp), "%s %s: points", what, k)
		for i := range wp {
			require.Equal(t, wp[i][0], gp[i][0], "%s %s: timestamps", what, k)
			wv, err1 := strconv.ParseFloat(wp[i][1], 64)
			gv, err2 := strconv.ParseFloat(gp[i][1], 64)
			require.NoError(t, err1)
			require.NoError(t, err2)
			if wv != gv && !(math.IsNaN(wv) && math.IsNaN(gv)) {
				require.InEpsilon(t, wv, gv, 1e-9, "%s %s at %s", what, k, wp[i][0])
			}
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// fleetQueries is a PromQL compliance-style set over the fleet's data:
// selectors with every matcher type (on stored and external labels),
// rates, aggregations, histograms, binary operations, functions.
var fleetQueries = []string{
	`http_requests_total`,
	`http_requests_total{code!="200", cluster="c1"}`,
	`{__name__=~"up|queue_depth", cluster=~"c.*"}`,
	`node_memory_bytes{instance!~"i1"}`,
	`up{cluster="c2"}`,
	`rate(http_requests_total[5m])`,
	`increase(http_requests_total{cluster="c1"}[15m])`,
	`sum by (cluster, job) (rate(http_requests_total[5m]))`,
	`sum by (cluster) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (cluster) (rate(http_requests_total[5m]))`,
	`histogram_quantile(0.9, sum by (le, cluster) (rate(http_request_duration_seconds_bucket[5m])))`,
	`count by (cluster) (up == 1)`,
	`max_over_time(node_memory_bytes[10m])`,
	`topk(3, node_memory_bytes)`,
	`avg without (instance) (node_memory_bytes)`,
	`sum(queue_depth) + on() group_left count(up)`,
	`label_replace(up, "n", "$1", "instance", "i(.*)")`,
	`absent(nonexistent_metric)`,
	`deriv(queue_depth[10m])`,
}

func TestThanosQuerierOverLevitated(t *testing.T) {
	bin := thanosBinary(t)
	step := 15 * time.Second
	end := time.Now().Add(-time.Minute).Truncate(time.Minute)
	var steps []time.Time
	for ts := end.Add(-time.Hour); !ts.After(end); ts = ts.Add(step) {
		steps = append(steps, ts)
	}

	// The fleet: an HA pair with the same data, a third node, and the
	// reference holding everything, with the cluster stored as a label.
	a := startNode(t, "--external-label=cluster=c1", "--external-label=replica=a")
	b := startNode(t, "--external-label=cluster=c1", "--external-label=replica=b")
	c := startNode(t, "--external-label=cluster=c2")
	ref := startNode(t)
	writeFleet(t, a.url, fleetData("c1"), steps)
	writeFleet(t, b.url, fleetData("c1"), steps)
	writeFleet(t, c.url, fleetData("c2"), steps)
	writeFleet(t, ref.url, fleetData("c1"), steps, [2]string{"cluster", "c1"})
	writeFleet(t, ref.url, fleetData("c2"), steps, [2]string{"cluster", "c2"})

	// levitated shows its external labels as Prometheus does.
	resp, err := http.Get(a.url + "/api/v1/status/config")
	require.NoError(t, err)
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(cfg), `external_labels:\n    cluster: c1\n    replica: a\n`)

	httpAddr := freePort(t)
	endpoint := func(n *node) string { return "--endpoint=" + strings.TrimPrefix(n.url, "http://") }
	runThanos(t, bin, "query",
		"--http-address="+httpAddr, "--grpc-address="+freePort(t),
		endpoint(a), endpoint(b), endpoint(c),
		"--query.replica-label=replica",
		"--endpoint.info-timeout=2s",
	)
	thanos := "http://" + httpAddr
	waitStores(t, thanos, 3)

	compare := func(phase string) {
		for _, q := range fleetQueries {
			instant := url.Values{"query": {q}, "time": {strconv.FormatInt(end.Unix(), 10)}}
			want, _ := apiGet(t, ref.url, "/api/v1/query", instant)
			got, _ := apiGet(t, thanos, "/api/v1/query", instant)
			requireSameResult(t, phase+" instant "+q, want, got)

			rng := url.Values{"query": {q}, "start": {strconv.FormatInt(end.Add(-50*time.Minute).Unix(), 10)},
				"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"60"}}
			want, _ = apiGet(t, ref.url, "/api/v1/query_range", rng)
			got, _ = apiGet(t, thanos, "/api/v1/query_range", rng)
			requireSameResult(t, phase+" range "+q, want, got)
		}
		// The metadata APIs answer the same sets.
		for _, path := range []string{"/api/v1/label/cluster/values", "/api/v1/label/job/values", "/api/v1/label/__name__/values"} {
			want := apiRaw(t, ref.url, path, nil)
			got := apiRaw(t, thanos, path, nil)
			require.Equal(t, want, got, "%s %s", phase, path)
		}
		series := url.Values{"match[]": {`up`, `queue_depth`}, "start": {strconv.FormatInt(end.Add(-time.Hour).Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}}
		require.Equal(t, apiRaw(t, ref.url, "/api/v1/series", series), apiRaw(t, thanos, "/api/v1/series", series), phase+" series")
	}
	compare("all replicas:")

	// One replica of the pair goes away: every answer stays the same.
	a.stop(t)
	compare("replica a down:")
}

// apiRaw returns the data of an API answer with its lists sorted, for
// label values and series.
func apiRaw(t *testing.T, base, path string, params url.Values) string {
	t.Helper()
	resp, err := http.Get(base + path + "?" + params.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, b)
	var r struct {
		Data []json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	require.NotEmpty(t, r.Data, "%s answered nothing", path)
	var items []string
	for _, d := range r.Data {
		var v any
		require.NoError(t, json.Unmarshal(d, &v))
		c, _ := json.Marshal(v) // map keys sorted
		items = append(items, string(c))
	}
	sort.Strings(items)
	return strings.Join(items, "\n")
}

// waitStores waits until the Querier reports n healthy StoreAPI
// endpoints.
func waitStores(t *testing.T, thanos string, n int) {
	t.Helper()
	var last string
	for range 600 {
		resp, err := http.Get(thanos + "/api/v1/stores")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			var r struct {
				Data map[string][]struct {
					LastError *string `json:"lastError"`
				} `json:"data"`
			}
			if json.Unmarshal(b, &r) == nil {
				healthy := 0
				for _, stores := range r.Data {
					for _, s := range stores {
						if s.LastError == nil {
							healthy++
						}
					}
				}
				if healthy >= n {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the Thanos Querier did not see %d healthy stores: %s", n, last)
}

// TestThanosSidecarInFrontOfLevitated: thanos sidecar takes levitated as
// its Prometheus (external labels from /api/v1/status/config, data by
// remote read), becomes ready, and a Querier over the sidecar answers as
// one over levitated's own StoreAPI.
func TestThanosSidecarInFrontOfLevitated(t *testing.T) {
	bin := thanosBinary(t)
	end := time.Now().Add(-time.Minute).Truncate(time.Minute)
	var steps []time.Time
	for ts := end.Add(-30 * time.Minute); !ts.After(end); ts = ts.Add(15 * time.Second) {
		steps = append(steps, ts)
	}
	n := startNode(t, "--external-label=cluster=c2", "--external-label=replica=a")
	writeFleet(t, n.url, fleetData("c2"), steps)

	sidecarHTTP, sidecarGRPC := freePort(t), freePort(t)
	runThanos(t, bin, "sidecar",
		"--prometheus.url="+n.url, "--tsdb.path="+filepath.Join(t.TempDir(), "tsdb"),
		"--http-address="+sidecarHTTP, "--grpc-address="+sidecarGRPC)
	ready := false
	for range 600 {
		resp, err := http.Get("http://" + sidecarHTTP + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = true
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.True(t, ready, "thanos sidecar did not become ready in front of levitated")

	viaSidecar, direct := freePort(t), freePort(t)
	runThanos(t, bin, "query", "--http-address="+viaSidecar, "--grpc-address="+freePort(t), "--endpoint="+sidecarGRPC)
	runThanos(t, bin, "query", "--http-address="+direct, "--grpc-address="+freePort(t), "--endpoint="+strings.TrimPrefix(n.url, "http://"))
	waitStores(t, "http://"+viaSidecar, 1)
	waitStores(t, "http://"+direct, 1)
	// A selector of external labels only is refused by a Thanos store (no
	// matchers left), by the sidecar as by levitated: name a metric too.
	for _, q := range []string{`{cluster="c2", __name__=~".+"}`, `rate(http_requests_total[5m])`, `sum by (replica) (queue_depth)`} {
		rng := url.Values{"query": {q}, "start": {strconv.FormatInt(end.Add(-20*time.Minute).Unix(), 10)},
			"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"30"}, "dedup": {"false"}}
		want, _ := apiGet(t, "http://"+direct, "/api/v1/query_range", rng)
		got, _ := apiGet(t, "http://"+viaSidecar, "/api/v1/query_range", rng)
		requireSameResult(t, "sidecar "+q, want, got)
	}
}
