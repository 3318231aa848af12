package server_test

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestEventFunctionsOnTheRealServer writes RED metrics by remote write and a
// deploy by the events API to a running server, then runs each event-window
// function through /api/v1/query_range over loopback and checks the values
// docs/promql-event-functions.md gives for this data; and MetricsQL WITH
// templates through query and query_range.
func TestEventFunctionsOnTheRealServer(t *testing.T) {
	srv := servertest.Start(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	at := func(d time.Duration) time.Time { return base.Add(d) }

	// Every 15 s for 50 minutes: checkout's 5xx counter +1, its 2xx counter
	// +9, and its latency 0.1 s until 20m, 0.2 s from 20m on.
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
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: at(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: v})
		}
		ts = append(ts, s)
	}
	require.Equal(t, http.StatusNoContent, writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: ts}).code)

	// A deploy of checkout from 20m to 25m.
	rfc := func(d time.Duration) string { return at(d).UTC().Format(time.RFC3339) }
	r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/events", fmt.Sprintf(`{"events":[
		{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"checkout","version":"2.0"}},
		{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"service":"checkout","version":"2.0"}}]}`, rfc(20*time.Minute), rfc(25*time.Minute)))
	require.Equal(t, http.StatusOK, r.code, r.body)

	const deploy = `change_event_active{event_name="deploy", service="checkout"}`
	for _, tc := range []struct {
		expr   string
		labels string
		want   string // values at 20m, 25m, ..., 40m; _ for none
	}{
		// Samples since 20m: 80, 81, ...
		{`increase_since(http_requests_total{code="500"}[1h], ` + deploy + `)`, `{code="500",service="checkout"}`, `_ 20 40 60 80`},
		{`rate_since(http_requests_total{code="500"}[1h], ` + deploy + `)`, `{code="500",service="checkout"}`, `_ 0.0666666667 0.0666666667 0.0666666667 0.0666666667`},
		{`avg_since(request_latency_seconds[1h], ` + deploy + `)`, `{service="checkout"}`, `0.2 0.2 0.2 0.2 0.2`},
		{`sum_since(request_latency_seconds[1h], ` + deploy + `)`, `{service="checkout"}`, `0.2 4.2 8.2 12.2 16.2`},
		{`min_since(http_requests_total{code="500"}[1h], ` + deploy + `)`, `{code="500",service="checkout"}`, `80 80 80 80 80`},
		{`max_since(request_latency_seconds[1h], ` + deploy + `)`, `{service="checkout"}`, `0.2 0.2 0.2 0.2 0.2`},
		{`count_since(request_latency_seconds[1h], ` + deploy + `)`, `{service="checkout"}`, `1 21 41 61 81`},
		{`quantile_since(0.5, http_requests_total{code="500"}[1h], ` + deploy + `)`, `{code="500",service="checkout"}`, `80 90 100 110 120`},
		// The window is [20m, 25m); the periods are 10 minutes.
		{`after_before_ratio(avg_over_time(request_latency_seconds[1h]), ` + deploy + `, 10m)`, `{service="checkout"}`, `_ 2 2 2 2`},
		{`after_before_difference(avg_over_time(request_latency_seconds[1h]), ` + deploy + `, 10m)`, `{service="checkout"}`, `_ 0.1 0.1 0.1 0.1`},
		{`after_before_ratio(rate(http_requests_total{code="500"}[1h]), ` + deploy + `)`, `{code="500",service="checkout"}`, `_ 1 1 1 1`},
		{`time_since_window_start(` + deploy + `)`, `{event_name="deploy",service="checkout",version="2.0"}`, `0 300 600 900 1200`},
		{`time_since_window_end(` + deploy + `)`, `{event_name="deploy",service="checkout",version="2.0"}`, `_ 0 300 600 900`},
		// MetricsQL WITH templates.
		{`WITH (errs = rate(http_requests_total{code=~"5.."}[5m]), all = rate(http_requests_total[5m])) sum(errs) by (service) / sum(all) by (service)`, `{service="checkout"}`, `0.1 0.1 0.1 0.1 0.1`},
		{`WITH (w = ` + deploy + `) increase_since(http_requests_total{code="500"}[1h], w)`, `{code="500",service="checkout"}`, `_ 20 40 60 80`},
	} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			got := rangeQuery(t, srv.URL, method, tc.expr, at(20*time.Minute), at(40*time.Minute), 5*time.Minute)
			require.Contains(t, got, tc.labels, "%s %s: %v", method, tc.expr, got)
			requireValues(t, tc.want, got[tc.labels], tc.expr)
		}
	}

	// Instant queries with WITH, and the 400s.
	params := url.Values{"query": {`WITH (w = ` + deploy + `) time_since_window_start(w)`}, "time": {unixString(at(30 * time.Minute))}}
	q := decodeQuery(t, get(t, srv.URL, "/api/v1/query", params))
	require.Len(t, q.Data.Result, 1)
	require.Equal(t, "600", q.Data.Result[0].Value[1])

	for expr, want := range map[string]string{
		`WITH (x = http_requests_total) range_median(x)`: `function \"range_median\" is MetricsQL-only`,
		`WITH (x = ) x`: `invalid parameter \"query\": expand WITH templates`,
		`WITH (x = up) increase_since(x[1h], http_requests_total)`:     `increase_since: the window argument must select one of change_event_active`,
		`increase_since(http_requests_total[1h], sum(` + deploy + `))`: `the window argument must be a selector`,
	} {
		for _, path := range []string{"/api/v1/query", "/api/v1/query_range"} {
			p := url.Values{"query": {expr}, "time": {unixString(at(30 * time.Minute))},
				"start": {unixString(at(20 * time.Minute))}, "end": {unixString(at(30 * time.Minute))}, "step": {"60"}}
			r := get(t, srv.URL, path, p)
			require.Equal(t, http.StatusBadRequest, r.code, r.body)
			require.Contains(t, r.body, `"errorType":"bad_data"`)
			require.Contains(t, r.body, want)
		}
	}
}

// rangeQuery runs query_range and returns, per series (labels as
// {a="b",...}), its values at each step, "_" where it has none.
func rangeQuery(t *testing.T, base, method, expr string, start, end time.Time, step time.Duration) map[string][]string {
	t.Helper()
	p := url.Values{"query": {expr}, "start": {unixString(start)}, "end": {unixString(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	var r response
	if method == http.MethodGet {
		r = get(t, base, "/api/v1/query_range", p)
	} else {
		r = postForm(t, base, "/api/v1/query_range", p)
	}
	q := decodeQuery(t, r)
	out := map[string][]string{}
	for _, s := range q.Data.Result {
		names := make([]string, 0, len(s.Metric))
		for k, v := range s.Metric {
			names = append(names, fmt.Sprintf("%s=%q", k, v))
		}
		sort.Strings(names)
		byT := map[int64]string{}
		for _, v := range s.Values {
			byT[int64(math.Round(v[0].(float64)*1000))] = v[1].(string)
		}
		var vals []string
		for ts := start; !ts.After(end); ts = ts.Add(step) {
			v, ok := byT[ts.UnixMilli()]
			if !ok {
				v = "_"
			}
			vals = append(vals, v)
		}
		out["{"+strings.Join(names, ",")+"}"] = vals
	}
	return out
}

// requireValues compares values with want (space-separated, "_" for none)
// to 1e-9.
func requireValues(t *testing.T, want string, got []string, msg string) {
	t.Helper()
	w := strings.Fields(want)
	require.Len(t, got, len(w), msg)
	for i := range w {
		if w[i] == "_" || got[i] == "_" {
			require.Equal(t, w[i], got[i], "%s: step %d of %v", msg, i, got)
			continue
		}
		wf, err := strconv.ParseFloat(w[i], 64)
		require.NoError(t, err)
		gf, err := strconv.ParseFloat(got[i], 64)
		require.NoError(t, err)
		require.InDelta(t, wf, gf, 1e-9, "%s: step %d of %v", msg, i, got)
	}
}
