package server_test

import (
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOverWindowsOnTheRealServer remote-writes a service's RED metrics whose
// errors rise from 1 % to 10 % in the second of two canary steps sent as
// events, and asks the HTTP API for the error share of each step in one
// query (over_windows): one series per step, with the step's weight.
func TestOverWindowsOnTheRealServer(t *testing.T) {
	srv := startOnDir(t, t.TempDir())
	defer srv.stop()
	base := time.Now().Truncate(time.Minute).Add(-40 * time.Minute)
	m := time.Minute
	writeRED(t, srv.URL, "shop", base, 3,
		redPhase{from: 0, to: 20 * m, rps: 50, errRatio: 0.01},
		redPhase{from: 20 * m, to: 30 * m, rps: 50, errRatio: 0.10},
		redPhase{from: 30 * m, to: 40 * m, rps: 50, errRatio: 0.01})
	for _, w := range []struct {
		weight     string
		start, end time.Duration
	}{{"10", 10 * m, 20 * m}, {"50", 20 * m, 30 * m}} {
		for _, st := range []struct {
			state string
			at    time.Duration
		}{{"start", w.start}, {"stop", w.end}} {
			postEvent(t, srv.URL, fmt.Sprintf(`{"name":"canary-step","state":%q,"timestamp":%d,"attributes":{"service":"shop","weight":%q}}`,
				st.state, base.Add(st.at).Unix(), w.weight))
		}
	}
	win := `change_event_active{event_name="canary-step", service="shop"}`
	expr := fmt.Sprintf(`sum by (weight, window_start) (over_windows(increase(http_requests_total{service="shop", code="500"}[2h]), %s))
	  / sum by (weight, window_start) (over_windows(increase(http_requests_total{service="shop"}[2h]), %s))`, win, win)
	q := decodeQuery(t, get(t, srv.URL, "/api/v1/query", url.Values{"query": {expr}}))
	require.Equal(t, "success", q.Status)
	require.Len(t, q.Data.Result, 2, "%+v", q.Data.Result)
	got := map[string]float64{}
	for _, r := range q.Data.Result {
		v, err := strconv.ParseFloat(r.Value[1].(string), 64)
		require.NoError(t, err)
		got[r.Metric["weight"]] = v
		start := map[string]time.Duration{"10": 10 * m, "50": 20 * m}[r.Metric["weight"]]
		require.Equal(t, strconv.FormatInt(base.Add(start).Unix(), 10), r.Metric["window_start"])
	}
	require.InDelta(t, 0.01, got["10"], 0.005, "%v", got)
	require.InDelta(t, 0.10, got["50"], 0.02, "%v", got)

	// A bad first argument is a 400 naming the rule.
	r := get(t, srv.URL, "/api/v1/query", url.Values{"query": {`over_windows(sum(up), ` + win + `)`}})
	require.Equal(t, 400, r.code, r.body)
	require.Contains(t, r.body, "over_windows: the first argument must be a range function")
}
