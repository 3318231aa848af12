package canaryapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/canaryapi"
	"github.com/levitated/levitated/pkg/events"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// env serves the analysis API over a real store and event store, over REST
// and gRPC on loopback.
type env struct {
	t      *testing.T
	db     *storage.DB
	events *eventstore.Store
	url    string
	client levitatedv1.AnalysisServiceClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := storagetest.New(t)
	ev := eventstore.New(storagetest.Namespace(t, db, storage.OwnerEvents), eventstore.Options{})
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	t.Cleanup(func() { _ = engine.Close() })
	svc := canaryapi.New(&rangequery.Runner{Engine: engine, Queryable: db}, ev, db, levpromql.NewParser(), canaryapi.Options{})

	h, err := svc.Handler(context.Background())
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /api/v1/analysis", h)
	mux.Handle("POST /api/v1/analysis:webhook", svc.WebhookHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	levitatedv1.RegisterAnalysisServiceServer(gs, svc)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &env{t: t, db: db, events: ev, url: srv.URL, client: levitatedv1.NewAnalysisServiceClient(conn)}
}

// post sends a body to POST /api/v1/analysis.
func (e *env) post(body string) (int, map[string]any) {
	e.t.Helper()
	resp, err := http.Post(e.url+"/api/v1/analysis", "application/json", strings.NewReader(body))
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	var out map[string]any
	require.NoError(e.t, json.Unmarshal(b, &out), string(b))
	return resp.StatusCode, out
}

// data writes 65 minutes up to end at 10 s steps of a checkout service's
// request counters (by code) and latency for each version, on two pods per
// version whose names differ between versions.
func (e *env) data(end time.Time, errorRatio map[string]float64) {
	e.t.Helper()
	app := e.db.AppenderV2(context.Background())
	seed := int64(0)
	for _, version := range []string{"stable", "healthy", "worse", "bad"} {
		ratio, ok := errorRatio[version]
		if !ok {
			continue
		}
		for pod := range 2 {
			seed++
			r := rand.New(rand.NewSource(seed))
			ls := func(name string, kv ...string) labels.Labels {
				return labels.FromStrings(append([]string{"__name__", name, "job", "checkout", "version", version,
					"pod", fmt.Sprintf("checkout-%s-%d", version, pod)}, kv...)...)
			}
			okLs, errLs, latLs := ls("http_requests_total", "code", "200"), ls("http_requests_total", "code", "500"), ls("request_duration_seconds")
			var okN, errN float64
			for ts := end.Add(-65 * time.Minute); !ts.After(end); ts = ts.Add(10 * time.Second) {
				n := 250 + 15*r.NormFloat64()
				bad := max(n*ratio*(1+0.2*r.NormFloat64()), 0)
				okN += n - bad
				errN += bad
				for _, s := range []struct {
					ls labels.Labels
					v  float64
				}{{okLs, okN}, {errLs, errN}, {latLs, 0.2 + 0.01*r.NormFloat64()}} {
					_, err := app.Append(0, s.ls, 0, ts.UnixMilli(), s.v, nil, nil, promstorage.AOptions{})
					require.NoError(e.t, err)
				}
			}
		}
	}
	require.NoError(e.t, app.Commit())
}

// window stores a closed canary-step window of checkout from start to end.
func (e *env) window(start, end time.Time, attrs map[string]string) string {
	e.t.Helper()
	tid, err := e.db.TenantID(context.Background(), "anonymous")
	require.NoError(e.t, err)
	out, err := e.events.Append(context.Background(), tid, []events.Event{
		{Name: "canary-step", State: events.StateStart, Time: start, Attributes: attrs},
		{Name: "canary-step", State: events.StateStop, Time: end, Attributes: attrs},
	})
	require.NoError(e.t, err)
	return out[0].ID
}

const errorRatioQuery = `sum(rate(http_requests_total{job="checkout",code=~"5.."}[1m])) / sum(rate(http_requests_total{job="checkout"}[1m]))`

func request(canary string, extra string) string {
	return fmt.Sprintf(`{
	  "baseline": "{version=\"stable\"}",
	  "canary": %q,
	  "metrics": [
	    {"name": "error-ratio", "query": %q, "direction": "increase", "critical": true, "critical_increase": 2, "weight": 50},
	    {"name": "latency", "query": "avg(request_duration_seconds{job=\"checkout\"})", "direction": "increase"}
	  ],
	  "thresholds": {"pass": 95, "marginal": 50}%s
	}`, fmt.Sprintf("version=%q", canary), errorRatioQuery, extra)
}

// TestAnalyzeEventWindow: the latest canary-step window of checkout,
// judged over REST for a healthy canary, one with 1.3 times the baseline's
// error ratio and one with 5 times.
func TestAnalyzeEventWindow(t *testing.T) {
	e := newEnv(t)
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	e.data(end, map[string]float64{"stable": 0.01, "healthy": 0.01, "worse": 0.013, "bad": 0.05})
	e.window(end.Add(-3*time.Hour), end.Add(-2*time.Hour), map[string]string{"service": "checkout"}) // an older one
	e.window(end.Add(-time.Hour), end, map[string]string{"service": "payments"})                     // another service
	id := e.window(end.Add(-time.Hour), end, map[string]string{"service": "checkout"})
	window := `, "window": {"event": "canary-step", "match": ["service=\"checkout\""]}`

	for _, tc := range []struct {
		canary, verdict, errors string
		score                   float64
		critical                bool
		explanation             string
	}{
		{"healthy", "Pass", "Pass", 100, false, "The interval does not clear the band: no significant difference, Pass."},
		{"worse", "Marginal", "High", 50, false, "The interval lies above the band: the canary is higher, but not beyond the critical increase 2: the metric fails, the canary is scored."},
		{"bad", "Fail", "High", 0, true, "The interval lies above the band: the canary is higher, beyond the critical increase 2: the metric is critical, so the canary fails."},
	} {
		t.Run(tc.canary, func(t *testing.T) {
			code, out := e.post(request(tc.canary, window))
			require.Equal(t, http.StatusOK, code, out)
			require.Equal(t, tc.verdict, out["verdict"], out)
			require.Equal(t, tc.score, out["score"])
			require.Equal(t, "10s", out["step"])
			require.Equal(t, end.Add(-time.Hour).UTC().Format(time.RFC3339), out["start"])
			require.Equal(t, end.UTC().Format(time.RFC3339), out["end"])
			w := out["window"].(map[string]any)
			require.Equal(t, id, w["start_id"])
			require.Equal(t, map[string]any{"service": "checkout"}, w["attributes"])
			require.Equal(t, false, w["open"])

			metrics := out["metrics"].([]any)
			require.Len(t, metrics, 2)
			er := metrics[0].(map[string]any)
			require.Equal(t, "error-ratio", er["name"])
			require.Equal(t, tc.errors, er["classification"], er["explanation"])
			require.Equal(t, tc.critical, er["critical"])
			require.Equal(t, 50.0, er["weight"])
			require.Contains(t, er["explanation"], tc.explanation)
			require.Contains(t, er["explanation"], "98% confidence interval of the shift canary − baseline")
			require.Regexp(t, `; 3[56]\d canary and 3[56]\d baseline samples\.`, er["explanation"])
			require.Contains(t, er["baseline_query"], `version="stable"`)
			require.Contains(t, er["canary_query"], fmt.Sprintf(`version=%q`, tc.canary))
			require.InDelta(t, 0.01, er["baseline"].(map[string]any)["mean"], 0.001)
			for _, k := range []string{"shift", "shift_lower", "shift_upper", "tolerance_band", "ratio"} {
				require.Contains(t, er, k)
			}
			lat := metrics[1].(map[string]any)
			require.Equal(t, "Pass", lat["classification"], lat["explanation"])
			require.Equal(t, 50.0, lat["weight"])
		})
	}

	// The window by id, over gRPC.
	resp, err := e.client.Analyze(context.Background(), &levitatedv1.AnalyzeRequest{
		Baseline: `version="stable"`, Canary: `version="bad"`,
		Metrics: []*levitatedv1.AnalysisMetric{{Name: "errors", Query: errorRatioQuery, Direction: "increase"}},
		Window:  &levitatedv1.EventWindow{EventId: id},
	})
	require.NoError(t, err)
	require.Equal(t, "Fail", resp.GetVerdict())
	require.Equal(t, "High", resp.GetMetrics()[0].GetClassification())
	require.Equal(t, 0.0, resp.GetScore())
}

// TestAnalyzeTimes: explicit times and lookback; the baseline offset
// compares the canary with its own past.
func TestAnalyzeTimes(t *testing.T) {
	e := newEnv(t)
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	e.data(end, map[string]float64{"stable": 0.01, "bad": 0.05})
	resp, err := e.client.Analyze(context.Background(), &levitatedv1.AnalyzeRequest{
		Baseline: `version="stable"`, Canary: `version="bad"`,
		Metrics: []*levitatedv1.AnalysisMetric{{Name: "errors", Query: errorRatioQuery}},
		Start:   end.Add(-30 * time.Minute).Format(time.RFC3339), End: fmt.Sprint(end.Unix()), Step: "30s",
	})
	require.NoError(t, err)
	require.Equal(t, "Fail", resp.GetVerdict(), resp.GetMetrics()[0].GetExplanation())
	require.Equal(t, "30s", resp.GetStep())
	require.InDelta(t, 61, resp.GetMetrics()[0].GetCanary().GetCount(), 1)

	// The last 20 minutes of the bad canary against the 20 minutes before:
	// the same series, no difference.
	resp, err = e.client.Analyze(context.Background(), &levitatedv1.AnalyzeRequest{
		Baseline: `version="bad"`, Canary: `version="bad"`, BaselineOffset: "20m",
		Metrics: []*levitatedv1.AnalysisMetric{{Name: "latency", Query: `avg(request_duration_seconds)`}},
		End:     end.Format(time.RFC3339), Lookback: "20m",
	})
	require.NoError(t, err)
	require.Equal(t, "Pass", resp.GetVerdict(), resp.GetMetrics()[0].GetExplanation())
	require.Equal(t, end.Add(-40*time.Minute).Unix(), resp.GetBaselineStart().AsTime().Unix())
}

// TestAnalyzePairsBySeries: an unaggregated query gives one series per pod
// and code; pods differ between the versions, so Kayenta's pairing would
// leave every pair half empty (Nodata). Natively that is an error naming
// the fix, and with the pod label ignored the series pair by code.
func TestAnalyzePairsBySeries(t *testing.T) {
	e := newEnv(t)
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	e.data(end, map[string]float64{"stable": 0.01, "bad": 0.05})
	body := func(ignore string) string {
		return fmt.Sprintf(`{"baseline": "version=\"stable\"", "canary": "version=\"bad\"", "lookback": "30m", "end": %q,
		  "metrics": [{"name": "requests", "query": "sum by (code, pod) (rate(http_requests_total[1m]))"}]%s}`, end.Format(time.RFC3339), ignore)
	}
	code, out := e.post(body(""))
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, float64(codes.InvalidArgument), out["code"])
	require.Contains(t, out["message"], "metrics[0].query: the baseline's and the canary's series do not pair: metric requests: the experiment has no series with tags {code=200, pod=checkout-stable-0}")
	require.Contains(t, out["message"], "name them in ignore_labels")

	code, out = e.post(body(`, "ignore_labels": ["pod", "version"]`))
	require.Equal(t, http.StatusBadRequest, code, "two pods per version still collide on code alone")
	require.Contains(t, out["message"], "has more than one series with tags {code=200}")

	code, out = e.post(strings.Replace(body(`, "ignore_labels": ["version"]`), "sum by (code, pod)", "sum by (code)", 1))
	require.Equal(t, http.StatusOK, code, out)
	metrics := out["metrics"].([]any)
	require.Len(t, metrics, 2)
	require.Equal(t, map[string]any{"code": "200"}, metrics[0].(map[string]any)["labels"])
	require.Equal(t, map[string]any{"code": "500"}, metrics[1].(map[string]any)["labels"])
	require.Equal(t, "High", metrics[1].(map[string]any)["classification"], metrics[1].(map[string]any)["explanation"])
}

// TestAnalyzeNoData: a canary without data is Nodata, explained, and left
// out of the score; must_have_data fails it.
func TestAnalyzeNoData(t *testing.T) {
	e := newEnv(t)
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	e.data(end, map[string]float64{"stable": 0.01})
	resp, err := e.client.Analyze(context.Background(), &levitatedv1.AnalyzeRequest{
		Baseline: `version="stable"`, Canary: `version="missing"`, Lookback: "30m", End: end.Format(time.RFC3339),
		Metrics: []*levitatedv1.AnalysisMetric{
			{Name: "errors", Query: errorRatioQuery},
			{Name: "latency", Query: `avg(request_duration_seconds)`, MustHaveData: true},
			{Name: "latency-2", Query: `max(request_duration_seconds)`},
		},
	})
	require.NoError(t, err)
	m := resp.GetMetrics()
	require.Equal(t, "Nodata", m[0].GetClassification())
	require.Equal(t, "No data for the canary: its query returned no sample (the baseline has 181). The metric is left out of the score.", m[0].GetExplanation())
	require.Equal(t, "NodataFailMetric", m[1].GetClassification())
	require.Contains(t, m[1].GetExplanation(), "must_have_data fails the metric.")
	require.Equal(t, "Fail", resp.GetVerdict(), "two of three metrics without data")
	require.Equal(t, "Canary Failed: 50% or more metrics returned NODATA", resp.GetReason())
	require.Nil(t, m[0].Ratio)
	require.Nil(t, m[0].Shift)
}

func TestAnalyzeBadInput(t *testing.T) {
	e := newEnv(t)
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	e.data(end, map[string]float64{"stable": 0.01, "bad": 0.05})
	good := func(metrics, extra string) string {
		return fmt.Sprintf(`{"baseline": "version=\"stable\"", "canary": "version=\"bad\"", "lookback": "30m", "metrics": %s%s}`, metrics, extra)
	}
	one := `[{"name": "errors", "query": "sum(rate(http_requests_total[1m]))"}]`
	for _, tc := range []struct {
		name, body string
		code       int
		message    string
	}{
		{"empty metric list", good(`[]`, ""), 400, "metrics: is empty: give at least one metric to judge"},
		{"no metrics", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "lookback": "30m"}`, 400, "metrics: is empty"},
		{"PromQL syntax error", good(`[{"name": "e", "query": "sum(rate(http_requests_total[1m])"}]`, ""), 400, "metrics[0].query: PromQL does not parse: 1:34: parse error: unclosed left parenthesis"},
		{"no query", good(`[{"name": "e"}]`, ""), 400, "metrics[0].query: is required"},
		{"duplicate name", good(`[{"name": "e", "query": "up"}, {"name": "e", "query": "up"}]`, ""), 400, `metrics[1].name: "e" is used by another metric`},
		{"bad direction", good(`[{"name": "e", "query": "up", "direction": "Increase"}]`, ""), 400, `metrics[0].direction: "Increase" is not a direction`},
		{"weights over 100", good(`[{"name": "a", "query": "up", "weight": 60}, {"name": "b", "query": "up", "weight": 60}]`, ""), 400, "metrics: the weights total 120, more than 100"},
		{"weight out of range", good(`[{"name": "a", "query": "up", "weight": 101}]`, ""), 400, "metrics[0].weight: 101 is out of range"},
		{"weights short of 100", good(`[{"name": "a", "query": "up", "weight": 40}, {"name": "b", "query": "up", "weight": 40}]`, ""), 400, "they must total 100"},
		{"weights leave nothing", good(`[{"name": "a", "query": "up", "weight": 100}, {"name": "b", "query": "up"}]`, ""), 400, "leaving nothing for the 1 unweighted metrics"},
		{"thresholds out of range", good(one, `, "thresholds": {"pass": 101}`), 400, "thresholds.pass: 101 is out of range: scores are from 0 to 100"},
		{"marginal above pass", good(one, `, "thresholds": {"pass": 50, "marginal": 60}`), 400, "thresholds.marginal: 60 is above pass (50)"},
		{"bad ratio", good(`[{"name": "a", "query": "up", "allowed_increase": -1}]`, ""), 400, "metrics[0].allowed_increase: -1 is not a ratio above 0"},
		{"unknown field", good(one, `, "thresholds": {"pass": 90, "margin": 60}`), 400, `unknown field "margin"`},
		{"bad selector", `{"baseline": "version=stable", "canary": "version=\"bad\"", "lookback": "30m", "metrics": ` + one + `}`, 400, "baseline: "},
		{"same selectors", `{"baseline": "version=\"bad\"", "canary": "{version=\"bad\"}", "lookback": "30m", "metrics": ` + one + `}`, 400, "canary: selects the same series as the baseline"},
		{"no time", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "metrics": ` + one + `}`, 400, "start: is required: give start (and end), lookback, or window"},
		{"window and start", good(one, `, "window": {"event": "deploy"}`), 400, "window: give either a window or start/end/lookback, not both"},
		{"bad lookback", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "lookback": "half an hour", "metrics": ` + one + `}`, 400, `lookback: "half an hour" is not a positive duration`},
		{"end before start", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z", "metrics": ` + one + `}`, 400, "end: 2024-01-01T00:00:00Z is not after the start"},
		{"bad time", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "start": "yesterday", "metrics": ` + one + `}`, 400, `start: "yesterday" is neither RFC 3339`},
		{"duplicate field", good(one, `, "step": "1s", "lookback": "24h"`), 400, "duplicate field"},
		{"step too fine", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "lookback": "24h", "step": "1s", "metrics": ` + one + `}`, 400, "step: 1s gives 86400 points per series from start to end, more than 11000"},
		{"no window", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "window": {"event": "canary-step"}, "metrics": ` + one + `}`, 404, `window: no "canary-step" window has started`},
		{"bad window id", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "window": {"event_id": "nope"}, "metrics": ` + one + `}`, 400, "window.event_id: "},
		{"bad window match", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "window": {"event": "x", "match": ["service="]}, "metrics": ` + one + `}`, 400, "window.match[0]: "},
		{"confidence out of range", good(one, `, "confidence_level": 1`), 400, "confidence_level: 1 is out of range"},
		{"query that fails", good(`[{"name": "e", "query": "label_replace(http_requests_total, \"code\", \"x\", \"\", \"\")"}]`, ""), 400, "metrics[0].query: the baseline query failed"},
		{"not JSON", `{`, 400, "unexpected EOF"},
		// docs/analysis.md once had this: an unescaped quote in a selector.
		{"unescaped quote", "{\n  \"baseline\": \"{version=\"stable\"}\",\n  \"canary\": \"x\"}", 400,
			`request body: invalid JSON at line 2, column 26 (after "baseline"): invalid character 's' after object key:value pair; a double quote inside a string must be escaped: "{version=\"stable\"}"`},
		{"unescaped quote in a list", `{"window": {"event": "x", "match": ["service="checkout""]}}`, 400,
			`request body: invalid JSON at line 1, column 47 (after "window.match[0]"): invalid character 'c' after array element; a double quote inside a string must be escaped`},
		{"wrong type", good(one, `, "thresholds": {"pass": "high"}`), 400, `request body at line 1, column `},
		{"step as a number of seconds", `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "lookback": 86400, "step": 1, "metrics": ` + one + `}`, 400, "step: 1s gives 86400 points per series"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.post(tc.body)
			require.Equal(t, tc.code, code, out)
			require.Contains(t, out["message"], tc.message)
		})
	}

	// gRPC gets the same errors with their codes.
	_, err := e.client.Analyze(context.Background(), &levitatedv1.AnalyzeRequest{Baseline: `a="b"`, Canary: `a="c"`, Lookback: "30m"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Equal(t, "metrics: is empty: give at least one metric to judge", status.Convert(err).Message())
	_, err = e.client.Analyze(context.Background(), &levitatedv1.AnalyzeRequest{Baseline: `a="b"`, Canary: `a="c"`,
		Window:  &levitatedv1.EventWindow{Event: "deploy"},
		Metrics: []*levitatedv1.AnalysisMetric{{Name: "a", Query: "up"}}})
	require.Equal(t, codes.NotFound, status.Code(err))
}
