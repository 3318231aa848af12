package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// fleetMetrics remote-writes to u, every 15 s for 50 minutes from base:
// checkout's 5xx counter +1 and 2xx counter +9 a step, its latency 0.1 s
// until 20m and 0.2 s after, and a native histogram of its request
// durations.
func fleetMetrics(t *testing.T, u string, base time.Time) {
	t.Helper()
	series := map[string][]string{
		"errors":  {"__name__", "http_requests_total", "code", "500", "service", "checkout"},
		"ok":      {"__name__", "http_requests_total", "code", "200", "service", "checkout"},
		"latency": {"__name__", "request_latency_seconds", "service", "checkout"},
	}
	var ts []prompb.TimeSeries
	for name, ls := range series {
		s := prompb.TimeSeries{Labels: labelsV1(ls...)}
		for i := 0; i <= 200; i++ {
			v := float64(i)
			switch name {
			case "ok":
				v = float64(9 * i)
			case "latency":
				v = 0.1
				if i >= 80 {
					v = 0.2
				}
			}
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: base.Add(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: v})
		}
		ts = append(ts, s)
	}
	h := prompb.TimeSeries{Labels: labelsV1("__name__", "request_duration_seconds", "service", "checkout")}
	for i := 0; i <= 200; i++ {
		n := uint64(10 * i)
		hist := &histogram.Histogram{
			Schema: 0, Count: n, Sum: 0.15 * float64(n), ZeroThreshold: 0.001,
			PositiveSpans:   []histogram.Span{{Offset: -3, Length: 2}},
			PositiveBuckets: []int64{int64(7 * i), int64(3*i - 7*i)}, // deltas: 7i and 3i observations
		}
		h.Histograms = append(h.Histograms, prompb.FromIntHistogram(base.Add(time.Duration(i)*15*time.Second).UnixMilli(), hist))
	}
	ts = append(ts, h)
	r := writeV1(t, u, &prompb.WriteRequest{Timeseries: ts})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
}

// fleetEvents sends a deploy of checkout from 20m to 25m after base.
func fleetEvents(t *testing.T, u string, base time.Time) {
	t.Helper()
	rfc := func(d time.Duration) string { return base.Add(d).UTC().Format(time.RFC3339) }
	r := sendJSON(t, http.MethodPost, u+"/api/v1/events", fmt.Sprintf(`{"events":[
		{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"checkout","version":"2.0"}},
		{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"service":"checkout","version":"2.0"}}]}`, rfc(20*time.Minute), rfc(25*time.Minute)))
	require.Equal(t, http.StatusOK, r.code, r.body)
}

// apiAnswer is a Prometheus API answer: its data, kept as JSON, and its
// warnings.
type apiAnswer struct {
	Status   string          `json:"status"`
	Data     json.RawMessage `json:"data"`
	Warnings []string        `json:"warnings"`
}

func apiGet(t *testing.T, base, path string, params url.Values) apiAnswer {
	t.Helper()
	r := get(t, base, path, params)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var a apiAnswer
	require.NoError(t, json.Unmarshal([]byte(r.body), &a), r.body)
	require.Equal(t, "success", a.Status, r.body)
	return a
}

func withQueryStore(endpoints ...string) func(*server.Options) {
	return func(o *server.Options) { o.QueryStore.Endpoints = endpoints }
}

// TestQueryStoreOverARemoteLevitated: node A holds the metrics only, node
// B holds the change events only and reads A through --query.store (A's
// Thanos StoreAPI on its gRPC port), node "one" holds both. B answers the
// event-window functions, plain and histogram queries, series, labels and
// a native analysis exactly as one does. A series B also holds itself is
// not counted twice. An unreachable endpoint is a warning, not an error.
func TestQueryStoreOverARemoteLevitated(t *testing.T) {
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	at := func(d time.Duration) string { return strconv.FormatInt(base.Add(d).Unix(), 10) }
	a := servertest.Start(t)
	one := servertest.Start(t)
	b := servertest.Start(t, withQueryStore(a.Addr().String()))
	fleetMetrics(t, a.URL, base)
	fleetMetrics(t, one.URL, base)
	fleetEvents(t, b.URL, base)
	fleetEvents(t, one.URL, base)
	// A's own change events (a later deploy of checkout) are A's: B's
	// event-window functions see B's events only.
	r := sendJSON(t, http.MethodPost, a.URL+"/api/v1/events", fmt.Sprintf(`{"events":[
		{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"checkout","version":"3.0"}}]}`, base.Add(30*time.Minute).Unix()))
	require.Equal(t, http.StatusOK, r.code, r.body)

	const deploy = `change_event_active{event_name="deploy", service="checkout"}`
	rangeParams := func(q string) url.Values {
		return url.Values{"query": {q}, "start": {at(20 * time.Minute)}, "end": {at(40 * time.Minute)}, "step": {"300"}}
	}
	queries := []string{
		`increase_since(http_requests_total{code="500"}[1h], ` + deploy + `)`,
		`rate_since(http_requests_total[1h], ` + deploy + `)`,
		`after_before_ratio(avg_over_time(request_latency_seconds[1h]), ` + deploy + `, 10m)`,
		`after_before_ratio(rate(http_requests_total{code="500"}[1h]), ` + deploy + `, 10m)`,
		`sum by (code) (rate(http_requests_total[5m]))`,
		`histogram_quantile(0.9, sum(rate(request_duration_seconds[5m])))`,
		`histogram_count(rate(request_duration_seconds[5m]))`,
		`count_over_time(http_requests_total[1h])`,
	}
	same := func(t *testing.T, path string, params url.Values) apiAnswer {
		t.Helper()
		want := apiGet(t, one.URL, path, params)
		got := apiGet(t, b.URL, path, params)
		require.JSONEq(t, unordered(t, want.Data), unordered(t, got.Data), "%s %v", path, params)
		require.Empty(t, got.Warnings)
		return got
	}
	for _, q := range queries {
		same(t, "/api/v1/query_range", rangeParams(q))
		same(t, "/api/v1/query", url.Values{"query": {q}, "time": {at(30 * time.Minute)}})
	}
	// The answers hold the data (values from docs/promql-event-functions.md).
	got := same(t, "/api/v1/query_range", rangeParams(queries[0]))
	require.Contains(t, string(got.Data), `[`+at(25*time.Minute)+`,"20"]`)
	require.Contains(t, string(got.Data), `[`+at(40*time.Minute)+`,"80"]`)
	got = same(t, "/api/v1/query", url.Values{"query": {queries[5]}, "time": {at(30 * time.Minute)}})
	require.Contains(t, string(got.Data), `"value":[`)
	got = same(t, "/api/v1/query_range", rangeParams(queries[2]))
	require.Contains(t, string(got.Data), `[`+at(40*time.Minute)+`,"2"]`)

	window := url.Values{"start": {at(0)}, "end": {at(50 * time.Minute)}}
	got = same(t, "/api/v1/series", url.Values{"match[]": {`{service="checkout"}`}, "start": window["start"], "end": window["end"]})
	require.Contains(t, string(got.Data), "request_duration_seconds")
	require.Contains(t, string(got.Data), "change_event_active")
	same(t, "/api/v1/labels", window)
	got = same(t, "/api/v1/label/__name__/values", window)
	require.Contains(t, string(got.Data), "http_requests_total")

	// The native analysis (docs/analysis.md): the deploy's window judged on
	// metrics only A holds, with the events only B holds.
	analysis := fmt.Sprintf(`{"baseline": "code=\"200\"", "canary": "code=\"500\"",
	  "window": {"event": "deploy", "match": ["service=\"checkout\""]},
	  "metrics": [{"name": "rate", "query": %q, "direction": "increase"},
	              {"name": "in-window", "query": %q, "direction": "increase"}]}`,
		`sum(rate(http_requests_total{service="checkout"}[1m]))`,
		// A's metrics joined with B's change-event series.
		`sum(rate(http_requests_total[1m])) and on() (count(change_event_active{event_name="deploy"}) > 0)`)
	want := sendJSON(t, http.MethodPost, one.URL+"/api/v1/analysis", analysis)
	require.Equal(t, http.StatusOK, want.code, want.body)
	res := sendJSON(t, http.MethodPost, b.URL+"/api/v1/analysis", analysis)
	require.Equal(t, http.StatusOK, res.code, res.body)
	// The same judgement; only the id of the window's start event differs
	// (each node named its own event).
	withoutEventID := func(body string) map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &m), body)
		delete(m["window"].(map[string]any), "start_id")
		return m
	}
	require.Equal(t, withoutEventID(want.body), withoutEventID(res.body))
	var verdict struct {
		Verdict string
		Metrics []struct{ Name, Classification string }
	}
	require.NoError(t, json.Unmarshal([]byte(res.body), &verdict))
	require.Len(t, verdict.Metrics, 2, res.body)
	for _, m := range verdict.Metrics {
		require.NotContains(t, []string{"Nodata", "NodataFailMetric", "Error"}, m.Classification, res.body)
	}

	// Dedup: B now holds the same series as A itself; merged, each sample
	// counts once.
	fleetMetrics(t, b.URL, base)
	for _, q := range queries {
		same(t, "/api/v1/query_range", rangeParams(q))
	}

	// Remote read (what a Thanos sidecar reads) serves B's own data only:
	// B's StoreAPI and remote read never pass the fleet on again.
	bare := servertest.Start(t, withQueryStore(a.Addr().String()))
	got = apiGet(t, bare.URL, "/api/v1/query", url.Values{"query": {`count(http_requests_total)`}, "time": {at(30 * time.Minute)}})
	require.Contains(t, string(got.Data), `"2"]`)
	require.Empty(t, remoteReadNames(t, bare.URL, base))
	require.NotEmpty(t, remoteReadNames(t, a.URL, base))

	// An endpoint that does not answer: the query answers with the local
	// data and a warning naming it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := l.Addr().String()
	require.NoError(t, l.Close())
	d := servertest.Start(t, withQueryStore(down, a.Addr().String()))
	fleetEvents(t, d.URL, base)
	for _, p := range []struct {
		path   string
		params url.Values
		fromA  string // in the answer only if A's part is in it
	}{
		{"/api/v1/query_range", rangeParams(queries[0]), `"code":"500"`},
		{"/api/v1/query", url.Values{"query": {queries[0]}, "time": {at(30 * time.Minute)}}, `"code":"500"`},
		// Prometheus' /api/v1/series reads the warnings of its series set
		// before the set is first read (warningsFirstQuerier), with one
		// matcher set and with several.
		{"/api/v1/series", url.Values{"match[]": {`{service="checkout"}`}, "start": window["start"], "end": window["end"]}, `"request_duration_seconds"`},
		{"/api/v1/series", url.Values{"match[]": {`{service="checkout"}`, `up`}, "start": window["start"], "end": window["end"]}, `"request_duration_seconds"`},
		{"/api/v1/labels", window, `"code"`},
		{"/api/v1/label/__name__/values", window, `"request_duration_seconds"`},
	} {
		got := apiGet(t, d.URL, p.path, p.params)
		require.NotEmpty(t, got.Warnings, p.path)
		require.Contains(t, strings.Join(got.Warnings, "\n"), "remote store "+down, p.path)
		require.Contains(t, string(got.Data), p.fromA, "%s: the answer of the endpoint that answers", p.path)
	}
	// The judge and the impact verdicts say so too: judged on the data
	// that answered, with the warning.
	res = sendJSON(t, http.MethodPost, d.URL+"/api/v1/analysis", analysis)
	require.Equal(t, http.StatusOK, res.code, res.body)
	var judged struct{ Warnings []string }
	require.NoError(t, json.Unmarshal([]byte(res.body), &judged))
	require.Contains(t, strings.Join(judged.Warnings, "\n"), "remote store "+down, res.body)
	require.Contains(t, want.body, `"warnings":[]`, "one node, no endpoint: no warning")
	gate := sendJSON(t, http.MethodPost, d.URL+"/api/v1/gates:evaluate", `{"service":"checkout","dry_run":true,"always_ok":true}`)
	require.Equal(t, http.StatusOK, gate.code, gate.body)
	var gated struct {
		Judgement struct{ Warnings, Explanation []string }
	}
	require.NoError(t, json.Unmarshal([]byte(gate.body), &gated))
	require.Contains(t, strings.Join(gated.Judgement.Warnings, "\n"), "remote store "+down, gate.body)
	require.Contains(t, strings.Join(gated.Judgement.Explanation, "\n"), "judged on the data that answered", gate.body)

	got = apiGet(t, d.URL, "/api/v1/query_range", rangeParams(queries[0]))
	want2 := apiGet(t, one.URL, "/api/v1/query_range", rangeParams(queries[0]))
	require.JSONEq(t, string(want2.Data), string(got.Data))
	r = get(t, d.URL, "/metrics", nil)
	require.Contains(t, r.body, `levitated_query_store_failures_total{endpoint="`+down+`",method="series"}`)
}

// remoteReadNames asks u's remote read (sampled) for every series of the
// hour from base and returns their metric names.
func remoteReadNames(t *testing.T, u string, base time.Time) []string {
	t.Helper()
	req := &prompb.ReadRequest{Queries: []*prompb.Query{{
		StartTimestampMs: base.UnixMilli(), EndTimestampMs: base.Add(time.Hour).UnixMilli(),
		Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_RE, Name: "__name__", Value: ".+"}},
	}}}
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	hreq, err := http.NewRequest(http.MethodPost, u+"/api/v1/read", bytes.NewReader(snappy.Encode(nil, b)))
	require.NoError(t, err)
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
	r := do(t, hreq)
	require.Equal(t, http.StatusOK, r.code, r.body)
	raw, err := snappy.Decode(nil, []byte(r.body))
	require.NoError(t, err)
	var resp prompb.ReadResponse
	require.NoError(t, proto.Unmarshal(raw, &resp))
	var names []string
	for _, res := range resp.Results {
		for _, s := range res.Timeseries {
			for _, l := range s.Labels {
				if l.Name == "__name__" {
					names = append(names, l.Value)
				}
			}
		}
	}
	return names
}

// unordered is an API answer's data with the series of an instant vector
// or a series list sorted by their JSON: as in Prometheus, their order is
// the store's (a merge with --query.store endpoints sorts them by labels,
// a single store does not), not part of the answer.
func unordered(t *testing.T, data json.RawMessage) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(data, &v))
	var list []any
	switch d := v.(type) {
	case map[string]any:
		if d["resultType"] == "vector" {
			list, _ = d["result"].([]any)
		}
	case []any:
		list = d
	}
	slices.SortFunc(list, func(a, b any) int {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return bytes.Compare(ja, jb)
	})
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return string(out)
}
