package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// points renders a query result as "labels@t=value" lines, sorted.
func points(t *testing.T, q queryResult) []string {
	t.Helper()
	var out []string
	for _, s := range q.Data.Result {
		keys := make([]string, 0, len(s.Metric))
		for k, v := range s.Metric {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		ls := strings.Join(keys, ",")
		if q.Data.ResultType == "vector" {
			out = append(out, fmt.Sprintf("%s@%v=%v", ls, s.Value[0], s.Value[1]))
			continue
		}
		for _, v := range s.Values {
			out = append(out, fmt.Sprintf("%s@%v=%v", ls, v[0], v[1]))
		}
	}
	sort.Strings(out)
	return out
}

// cacheQueries returns levitated_query_results_cache_queries_total by result.
func cacheQueries(t *testing.T, base string) map[string]int {
	t.Helper()
	r := get(t, base, "/metrics", nil)
	require.Equal(t, http.StatusOK, r.code)
	out := map[string]int{}
	for _, line := range strings.Split(r.body, "\n") {
		rest, ok := strings.CutPrefix(line, `levitated_query_results_cache_queries_total{result="`)
		if !ok {
			continue
		}
		name, val, _ := strings.Cut(rest, `"} `)
		n, err := strconv.ParseFloat(val, 64)
		require.NoError(t, err)
		out[name] = int(n)
	}
	return out
}

// TestResultsCacheSeesEveryWrite runs a dashboard's range queries twice on
// the real server (the second from the cache), then writes out-of-order
// samples and back-dated events into the cached range through remote write
// and the events API, and requires the next answers to be the fresh ones:
// each equal, step by step, to instant queries at those steps (which the
// cache does not serve).
func TestResultsCacheSeesEveryWrite(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) { o.Storage.OutOfOrderWindow = 2 * time.Hour })
	now := time.Now().Truncate(time.Minute)
	at := func(d time.Duration) time.Time { return now.Add(-time.Hour + d) }
	var ts []prompb.TimeSeries
	for _, svc := range []string{"checkout", "cart"} {
		s := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "service", svc)}
		g := prompb.TimeSeries{Labels: labelsV1("__name__", "queue_depth", "service", svc)}
		for i := 0; i <= 60*4; i++ {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: at(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: float64(6 * i)})
			if i%4 != 1 { // a gap every minute, for the out-of-order write to fill
				g.Samples = append(g.Samples, prompb.Sample{Timestamp: at(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: 1})
			}
		}
		ts = append(ts, s, g)
	}
	require.Equal(t, http.StatusNoContent, writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: ts}).code)

	start, end, step := at(10*time.Minute), at(50*time.Minute), time.Minute
	panel := func(q string) []string {
		return points(t, decodeQuery(t, get(t, srv.URL, "/api/v1/query_range", url.Values{
			"query": {q}, "start": {unixString(start)}, "end": {unixString(end)}, "step": {"60"}})))
	}
	perStep := func(q string) []string {
		var out []string
		for s := start; !s.After(end); s = s.Add(step) {
			out = append(out, points(t, decodeQuery(t, get(t, srv.URL, "/api/v1/query", url.Values{
				"query": {q}, "time": {unixString(s)}})))...)
		}
		sort.Strings(out)
		return out
	}
	qs := []string{
		`max_over_time(queue_depth[1m])`,
		`sum by (service) (rate(http_requests_total[5m]))`,
		`change_event_active{event_name="deploy"}`,
		`time_since_window_start(change_event_active{event_name="deploy"})`,
	}
	first := map[string][]string{}
	for _, q := range qs {
		first[q] = panel(q)
		require.Equal(t, perStep(q), first[q], q)
	}
	hits := cacheQueries(t, srv.URL)["hit"]
	for _, q := range qs {
		require.Equal(t, first[q], panel(q), q)
	}
	require.Equal(t, hits+len(qs), cacheQueries(t, srv.URL)["hit"], "the second run of each panel is served from the cache")

	check := func(qs ...string) {
		for _, q := range qs {
			got := panel(q)
			require.NotEqual(t, first[q], got, "%s: the late writes are in the answer", q)
			require.Equal(t, perStep(q), got, q)
		}
	}
	// A deploy 40 to 35 minutes back, sent late: the event panels change,
	// the metric panels are still served from the cache.
	r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/events", fmt.Sprintf(`{"events":[
		{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"cart"}},
		{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"service":"cart"}}]}`,
		at(20*time.Minute).UTC().Format(time.RFC3339), at(25*time.Minute).UTC().Format(time.RFC3339)))
	require.Equal(t, http.StatusOK, r.code, r.body)

	hits = cacheQueries(t, srv.URL)["hit"]
	check(qs[2], qs[3])
	require.Equal(t, first[qs[0]], panel(qs[0]))
	require.Equal(t, first[qs[1]], panel(qs[1]))
	require.Equal(t, hits+2, cacheQueries(t, srv.URL)["hit"], "events do not invalidate what does not read them")

	// Out of order, 30 minutes back, into the gaps of the cached range.
	ooo := []prompb.TimeSeries{{
		Labels:  labelsV1("__name__", "queue_depth", "service", "cart"),
		Samples: []prompb.Sample{{Timestamp: at(30*time.Minute + 15*time.Second).UnixMilli(), Value: 42}},
	}, {
		Labels:  labelsV1("__name__", "http_requests_total", "service", "search"),
		Samples: []prompb.Sample{{Timestamp: at(20 * time.Minute).UnixMilli(), Value: 1}, {Timestamp: at(21 * time.Minute).UnixMilli(), Value: 601}},
	}}
	require.Equal(t, http.StatusNoContent, writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: ooo}).code)
	check(qs[0], qs[1])
	require.Contains(t, strings.Join(panel(qs[0]), " "), "=42")
	c := cacheQueries(t, srv.URL)
	require.Positive(t, c["partial"], "the metric panels reused the steps the writes did not reach: %v", c)

	// nocache=1 evaluates without the cache, to the same answer.
	bypassed := points(t, decodeQuery(t, get(t, srv.URL, "/api/v1/query_range", url.Values{
		"query": {qs[1]}, "start": {unixString(start)}, "end": {unixString(end)}, "step": {"60"}, "nocache": {"1"}})))
	require.Equal(t, panel(qs[1]), bypassed)
	require.Equal(t, 1, cacheQueries(t, srv.URL)["bypassed"])
}
