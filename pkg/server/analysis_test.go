package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

// writeCanary remote-writes 40 minutes up to end of a service's request
// counters for a baseline and a canary version, with the canary's share of
// 5xx responses errorRatio times the baseline's 1 %.
func writeCanary(t *testing.T, u string, end time.Time, canaryErrors float64) {
	t.Helper()
	var req prompb.WriteRequest
	for i, v := range []struct {
		version string
		ratio   float64
	}{{"stable", 0.01}, {"canary", 0.01 * canaryErrors}} {
		r := rand.New(rand.NewSource(int64(i + 1)))
		ok := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "code", "200", "job", "checkout", "version", v.version)}
		bad := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "code", "500", "job", "checkout", "version", v.version)}
		var okN, badN float64
		for ts := end.Add(-40 * time.Minute); !ts.After(end); ts = ts.Add(10 * time.Second) {
			n := 500 + 25*r.NormFloat64()
			e := max(n*v.ratio*(1+0.2*r.NormFloat64()), 0)
			okN, badN = okN+n-e, badN+e
			ok.Samples = append(ok.Samples, prompb.Sample{Timestamp: ts.UnixMilli(), Value: okN})
			bad.Samples = append(bad.Samples, prompb.Sample{Timestamp: ts.UnixMilli(), Value: badN})
		}
		req.Timeseries = append(req.Timeseries, ok, bad)
	}
	r := writeV1(t, u, &req)
	require.Equal(t, http.StatusNoContent, r.code, r.body)
}

const serverErrorRatio = `sum(rate(http_requests_total{job="checkout",code=~"5.."}[1m])) / sum(rate(http_requests_total{job="checkout"}[1m]))`

func kayentaConfig() string {
	return fmt.Sprintf(`{"name": "checkout", "applications": ["checkout"],
	  "metrics": [{"name": "error-ratio", "scopeName": "default", "groups": ["errors"],
	    "query": {"type": "prometheus", "customInlineTemplate": %q},
	    "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}}],
	  "classifier": {"groupWeights": {"errors": 100}}}`,
		"PromQL:"+`sum(rate(http_requests_total{job="checkout",version="${scope}",code=~"5.."}[1m])) / sum(rate(http_requests_total{job="checkout",version="${scope}"}[1m]))`)
}

func kayentaRequest(start, end time.Time) string {
	sc := func(s string) string {
		return fmt.Sprintf(`{"scope":%q,"location":"","step":10,"start":%q,"end":%q}`, s, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	return fmt.Sprintf(`{"scopes":{"default":{"controlScope":%s,"experimentScope":%s}},"thresholds":{"pass":95,"marginal":75}}`, sc("stable"), sc("canary"))
}

func waitForExecution(t *testing.T, u, id string) map[string]any {
	t.Helper()
	for range 3000 {
		r := get(t, u, "/canary/"+id, nil)
		require.Equal(t, http.StatusOK, r.code, r.body)
		var st map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.body), &st))
		if st["complete"] == true {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("execution %s did not complete", id)
	return nil
}

// TestCanaryAnalysisOnTheRealServer judges a canary with 5 times the
// baseline's error ratio through the Kayenta API and the native API (REST
// and gRPC, over an event window sent through the events API), on the
// real server, with the data remote-written.
func TestCanaryAnalysisOnTheRealServer(t *testing.T) {
	srv := startOnDir(t, t.TempDir())
	defer srv.stop()
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	start := end.Add(-30 * time.Minute)
	writeCanary(t, srv.URL, end, 5)

	// Kayenta.
	r := sendJSON(t, http.MethodPost, srv.URL+"/canaryConfig", kayentaConfig())
	require.Equal(t, http.StatusOK, r.code, r.body)
	var created struct{ CanaryConfigID string }
	require.NoError(t, json.Unmarshal([]byte(r.body), &created))
	r = sendJSON(t, http.MethodPost, srv.URL+"/canary/"+created.CanaryConfigID+"?application=checkout", kayentaRequest(start, end))
	require.Equal(t, http.StatusOK, r.code, r.body)
	var started struct{ CanaryExecutionID string }
	require.NoError(t, json.Unmarshal([]byte(r.body), &started))
	st := waitForExecution(t, srv.URL, started.CanaryExecutionID)
	require.Equal(t, "succeeded", st["status"], st["exception"])
	score := st["result"].(map[string]any)["judgeResult"].(map[string]any)["score"].(map[string]any)
	require.Equal(t, 0.0, score["score"])
	require.Equal(t, "Fail", score["classification"])

	// The native API over the canary-step window of checkout. The second
	// metric joins with the window series, which keep their own labels.
	r = sendJSON(t, http.MethodPost, srv.URL+"/api/v1/events", fmt.Sprintf(`{"events":[
	  {"name":"canary-step","state":"start","timestamp":%d,"attributes":{"service":"checkout"}},
	  {"name":"canary-step","state":"stop","timestamp":%d,"attributes":{"service":"checkout"}}]}`, start.Unix(), end.Unix()))
	require.Equal(t, http.StatusOK, r.code, r.body)
	body := fmt.Sprintf(`{"baseline": "version=\"stable\"", "canary": "version=\"canary\"",
	  "window": {"event": "canary-step", "match": ["service=\"checkout\""]},
	  "metrics": [
	    {"name": "error-ratio", "query": %q, "direction": "increase", "critical": true},
	    {"name": "errors-in-window", "query": %q, "direction": "increase"}]}`,
		serverErrorRatio, `sum(rate(http_requests_total{code="500"}[1m])) and on() (count(change_event_active{event_name="canary-step"}) > 0)`)
	r = sendJSON(t, http.MethodPost, srv.URL+"/api/v1/analysis", body)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var out struct {
		Score   float64
		Verdict string
		Metrics []struct{ Name, Classification, Explanation string }
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &out))
	require.Equal(t, "Fail", out.Verdict)
	require.Equal(t, "High", out.Metrics[0].Classification, out.Metrics[0].Explanation)
	require.Equal(t, "High", out.Metrics[1].Classification, out.Metrics[1].Explanation)

	// gRPC on the same port.
	conn, err := grpc.NewClient(srv.URL[len("http://"):], grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	resp, err := levitatedv1.NewAnalysisServiceClient(conn).Analyze(context.Background(), &levitatedv1.AnalyzeRequest{
		Baseline: `version="stable"`, Canary: `version="canary"`,
		Start: start.Format(time.RFC3339), End: end.Format(time.RFC3339),
		Metrics: []*levitatedv1.AnalysisMetric{{Name: "error-ratio", Query: serverErrorRatio, Direction: "increase"}},
	})
	require.NoError(t, err)
	require.Equal(t, "Fail", resp.GetVerdict())

	// The routes are instrumented and answer Kayenta's errors.
	r = get(t, srv.URL, "/canary/nope", nil)
	require.Equal(t, http.StatusNotFound, r.code)
	require.JSONEq(t, `{"message":"canaryExecutionId: No canary execution with id 'nope'.","field":"canaryExecutionId"}`, r.body)
	r = get(t, srv.URL, "/metrics", url.Values{})
	require.Contains(t, r.body, "levitated_kayenta_executions_total")
}

// TestKayentaExecutionAcrossRestart stops the server right after an
// execution is accepted and starts a new one on the same directory: the
// execution completes (before the stop, or after the restart; pkg/kayenta's
// tests force each case).
func TestKayentaExecutionAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	srv := startOnDir(t, dir)
	writeCanary(t, srv.URL, end, 1)
	r := sendJSON(t, http.MethodPost, srv.URL+"/canaryConfig", kayentaConfig())
	require.Equal(t, http.StatusOK, r.code, r.body)
	var created struct{ CanaryConfigID string }
	require.NoError(t, json.Unmarshal([]byte(r.body), &created))
	r = sendJSON(t, http.MethodPost, srv.URL+"/canary/"+created.CanaryConfigID, kayentaRequest(end.Add(-30*time.Minute), end))
	require.Equal(t, http.StatusOK, r.code, r.body)
	var started struct{ CanaryExecutionID string }
	require.NoError(t, json.Unmarshal([]byte(r.body), &started))
	srv.stop()

	srv = startOnDir(t, dir)
	defer srv.stop()
	st := waitForExecution(t, srv.URL, started.CanaryExecutionID)
	require.Equal(t, "succeeded", st["status"], st["exception"])
	require.Equal(t, "kayenta-levitated", st["application"])
}
