package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/server"
)

// redPhase is a span of a service's traffic: rps requests per second, a
// share errRatio of them 5xx, on the series of one track (or none).
type redPhase struct {
	from, to time.Duration
	track    string
	rps      float64
	errRatio float64
}

// latencyShares split requests into the buckets 0.05, 0.1, 0.25, 0.5, 1
// and +Inf seconds.
var (
	latencyBounds = []string{"0.05", "0.1", "0.25", "0.5", "1", "+Inf"}
	latencyShares = []float64{0.5, 0.3, 0.15, 0.04, 0.009, 0.001}
)

// writeRED remote-writes a service's Prometheus-client RED metrics
// (http_requests_total by code, http_request_duration_seconds_bucket),
// scraped every 10 s from base, with Poisson-like noise from a fixed seed.
func writeRED(t *testing.T, u, service string, base time.Time, seed int64, phases ...redPhase) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	type counters struct {
		ok, bad float64
		buckets []float64
		ts      map[string]*prompb.TimeSeries
	}
	byTrack := map[string]*counters{}
	series := func(c *counters, key string, nv ...string) *prompb.TimeSeries {
		if s, ok := c.ts[key]; ok {
			return s
		}
		s := &prompb.TimeSeries{Labels: labelsV1(nv...)}
		c.ts[key] = s
		return s
	}
	var all []*prompb.TimeSeries
	for _, p := range phases {
		c := byTrack[p.track]
		if c == nil {
			c = &counters{buckets: make([]float64, len(latencyBounds)), ts: map[string]*prompb.TimeSeries{}}
			byTrack[p.track] = c
		}
		with := func(nv ...string) []string {
			nv = append(nv, "service", service)
			if p.track != "" {
				nv = append(nv, "track", p.track)
			}
			return nv
		}
		for at := p.from; at < p.to; at += 10 * time.Second {
			n := max(p.rps*10+math.Sqrt(p.rps*10)*r.NormFloat64(), 0)
			e := min(max(n*p.errRatio+math.Sqrt(n*p.errRatio)*r.NormFloat64(), 0), n)
			c.ok, c.bad = c.ok+n-e, c.bad+e
			ts := base.Add(at).UnixMilli()
			for code, v := range map[string]float64{"200": c.ok, "500": c.bad} {
				s := series(c, "req"+code, with("__name__", "http_requests_total", "code", code)...)
				s.Samples = append(s.Samples, prompb.Sample{Timestamp: ts, Value: v})
			}
			cum := 0.0
			for i, le := range latencyBounds {
				c.buckets[i] += n * latencyShares[i] * (1 + 0.05*r.NormFloat64())
				cum += c.buckets[i]
				s := series(c, "le"+le, with("__name__", "http_request_duration_seconds_bucket", "le", le)...)
				s.Samples = append(s.Samples, prompb.Sample{Timestamp: ts, Value: cum})
			}
		}
	}
	for _, c := range byTrack {
		for _, s := range c.ts {
			all = append(all, s)
		}
	}
	req := &prompb.WriteRequest{}
	for _, s := range all {
		req.Timeseries = append(req.Timeseries, *s)
	}
	resp := writeV1(t, u, req)
	require.Equal(t, http.StatusNoContent, resp.code, resp.body)
}

// postEvent sends one event through the REST events API and returns its id.
func postEvent(t *testing.T, u, body string) string {
	t.Helper()
	r := sendJSON(t, http.MethodPost, u+"/api/v1/events", body)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var out struct {
		Event struct {
			ID string `json:"id"`
		} `json:"event"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &out))
	return out.Event.ID
}

type impactAnswer struct {
	Verdict     string   `json:"verdict"`
	Score       *float64 `json:"score"`
	Failing     []string `json:"failing_signals"`
	Explanation []string `json:"explanation"`
	EventID     string   `json:"event_id"`
	Comparisons []struct {
		Kind    string `json:"kind"`
		Verdict string `json:"verdict"`
		Signals []struct {
			Signal         string   `json:"signal"`
			Classification string   `json:"classification"`
			Judged         bool     `json:"judged"`
			Critical       bool     `json:"critical"`
			Explanation    string   `json:"explanation"`
			Ratio          *float64 `json:"ratio"`
			ShiftLower     *float64 `json:"shift_lower"`
			ShiftUpper     *float64 `json:"shift_upper"`
		} `json:"signals"`
	} `json:"comparisons"`
}

// waitImpact polls GET /api/v1/events/{id}/impact until the change is
// judged.
func waitImpact(t *testing.T, u, id string) impactAnswer {
	t.Helper()
	var last response
	for range 600 {
		last = get(t, u, "/api/v1/events/"+id+"/impact", nil)
		if last.code == http.StatusOK {
			var a impactAnswer
			require.NoError(t, json.Unmarshal([]byte(last.body), &a), last.body)
			return a
		}
		require.Equal(t, http.StatusNotFound, last.code, last.body)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("change %s was not judged: %d %s", id, last.code, last.body)
	return impactAnswer{}
}

func startImpactServer(t *testing.T, dir, config string, disabled bool) stoppable {
	t.Helper()
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = dir
	o.Registry = prometheus.NewRegistry()
	o.Storage.OutOfOrderWindow = 2 * time.Hour
	o.Impact.ConfigFile = config
	o.Impact.Interval = 50 * time.Millisecond
	o.Impact.Disabled = disabled
	o.Impact.Workers = 3 // the pool judges several services' changes at once
	s, err := server.New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return stoppable{URL: "http://" + s.Addr().String(), stop: func() {
		cancel()
		require.NoError(t, <-done)
	}}
}

// instant evaluates expr now and returns its one value.
func instant(t *testing.T, u, expr string) float64 {
	t.Helper()
	q := decodeQuery(t, get(t, u, "/api/v1/query", url.Values{"query": {expr}}))
	require.Len(t, q.Data.Result, 1, "%s: %+v", expr, q.Data.Result)
	v, err := strconv.ParseFloat(q.Data.Result[0].Value[1].(string), 64)
	require.NoError(t, err)
	return v
}

// waitValue polls expr until it has one value equal to want: a
// judgement's series are written just after its change_impact event.
func waitValue(t *testing.T, u, expr string, want float64) {
	t.Helper()
	for range 200 {
		q := decodeQuery(t, get(t, u, "/api/v1/query", url.Values{"query": {expr}}))
		if len(q.Data.Result) == 1 {
			if v, err := strconv.ParseFloat(q.Data.Result[0].Value[1].(string), 64); err == nil && v == want {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	require.Equal(t, want, instant(t, u, expr), expr)
}

// TestEveryChangeIsJudged remote-writes the RED metrics of four services
// and posts their deploys and canary steps as events, with no analysis or
// query written anywhere, and checks what levitated concludes by itself:
// the healthy deploys pass, the deploy with ten times the errors fails and
// names error-ratio, the canary with ten times the baseline's errors fails
// against the baseline, the deploy without traffic is inconclusive; the
// verdicts are events and series; the DORA series hold the figures
// computed here from the events sent; the gate answers CI; and a restart
// between the stops and the judgements judges each change exactly once.
func TestEveryChangeIsJudged(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(t.TempDir(), "impact.yml")
	require.NoError(t, os.WriteFile(config, []byte(`
events:
  delay: 30s
split:
  label: track
  baseline: baseline
  canary: canary
`), 0o600))

	base := time.Now().Truncate(10 * time.Second).Add(-18 * time.Minute)
	at := func(d time.Duration) string { return base.Add(d).UTC().Format(time.RFC3339) }
	m := time.Minute

	// Phase 1: the changes happen while automatic judgement is off, as if
	// levitated went down after the stops.
	srv := startImpactServer(t, dir, config, true)
	// web: healthy, then a deploy with 10x errors, then a fix.
	writeRED(t, srv.URL, "web", base, 1,
		redPhase{0, 6 * m, "", 100, 0.01}, redPhase{6 * m, 12 * m, "", 100, 0.10}, redPhase{12 * m, 16 * m, "", 100, 0.01})
	// pay: a baseline track throughout, a canary track with 10x errors
	// during the canary step.
	writeRED(t, srv.URL, "pay", base, 2, redPhase{0, 9 * m, "baseline", 90, 0.01})
	writeRED(t, srv.URL, "pay", base, 3, redPhase{3 * m, 6 * m, "canary", 30, 0.10})

	deploy := func(name, service string, from, to time.Duration, commit time.Duration, extra string) string {
		attrs := fmt.Sprintf(`"service":%q%s`, service, extra)
		if commit >= 0 {
			attrs += fmt.Sprintf(`,"commit_timestamp":%q`, at(commit))
		}
		id := postEvent(t, srv.URL, fmt.Sprintf(`{"name":%q,"state":"start","timestamp":%q,"attributes":{%s}}`, name, at(from), attrs))
		postEvent(t, srv.URL, fmt.Sprintf(`{"name":%q,"state":"stop","timestamp":%q,"attributes":{%s}}`, name, at(to), attrs))
		return id
	}
	d1 := deploy("deploy", "web", 3*m, 6*m, 0, `,"version":"1"`)      // lead 6m
	d2 := deploy("deploy", "web", 6*m, 9*m, 5*m, `,"version":"2"`)    // lead 4m
	d3 := deploy("deploy", "web", 12*m, 15*m, 11*m, `,"version":"3"`) // lead 4m
	canary := deploy("canary-step", "pay", 3*m, 6*m, -1, `,"weight":"10"`)
	idle := deploy("deploy", "idle", 3*m, 6*m, -1, "")
	// Not judged: no service attribute, and a name that is not judged.
	postEvent(t, srv.URL, fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"team":"x"}}`, at(4*m)))
	scaleUp := postEvent(t, srv.URL, fmt.Sprintf(`{"name":"scale-up","state":"stop","timestamp":%q,"attributes":{"service":"web"}}`, at(4*m)))

	r := get(t, srv.URL, "/api/v1/events/"+d1+"/impact", nil)
	require.Equal(t, http.StatusNotFound, r.code, r.body)
	require.Contains(t, r.body, "not judged yet")
	srv.stop()

	// Phase 2: levitated comes back and judges what it missed.
	srv = startImpactServer(t, dir, config, false)
	a1, a2, a3 := waitImpact(t, srv.URL, d1), waitImpact(t, srv.URL, d2), waitImpact(t, srv.URL, d3)
	ac, ai := waitImpact(t, srv.URL, canary), waitImpact(t, srv.URL, idle)

	t.Logf("d1 %s %v\nd2 %s %v\nd3 %s %v\ncanary %s %v\nidle %s %v", a1.Verdict, a1.Explanation, a2.Verdict, a2.Explanation, a3.Verdict, a3.Explanation, ac.Verdict, ac.Explanation, ai.Verdict, ai.Explanation)
	require.Equal(t, "pass", a1.Verdict, "%v", a1.Explanation)
	require.Equal(t, "pass", a3.Verdict, "%v", a3.Explanation)
	require.Equal(t, "fail", a2.Verdict, "%v", a2.Explanation)
	require.Contains(t, a2.Failing, "error-ratio")
	require.Contains(t, fmt.Sprint(a2.Explanation), "error-ratio High")
	require.Equal(t, 0.0, *a2.Score) // error-ratio is critical
	ba := a2.Comparisons[0]
	require.Equal(t, "before_after", ba.Kind)
	found := false
	for _, s := range ba.Signals {
		switch s.Signal {
		case "error-ratio":
			found = true
			require.True(t, s.Judged)
			require.Equal(t, "High", s.Classification)
			require.Greater(t, *s.Ratio, 5.0, s.Explanation)
			require.Greater(t, *s.ShiftLower, 0.0)
		case "otel-error-ratio", "otel-latency-p99":
			require.False(t, s.Judged, "web emits no OpenTelemetry metrics")
			// Left out: not a critical failure, and not said to fail the
			// canary (otel-error-ratio is critical in the configuration).
			require.False(t, s.Critical, s.Signal)
			require.Equal(t, "Not judged: 0 baseline and 0 canary points, fewer than the 10 needed (neither query returned a sample); left out of this comparison.", s.Explanation)
		}
	}
	require.True(t, found)

	require.Equal(t, "fail", ac.Verdict, "%v", ac.Explanation)
	var cb bool
	for _, c := range ac.Comparisons {
		if c.Kind == "canary_baseline" {
			cb = true
			require.Equal(t, "fail", c.Verdict)
		}
	}
	require.True(t, cb, "the canary is judged against the baseline: %v", ac.Explanation)
	require.Contains(t, ac.Failing, "error-ratio")

	require.Equal(t, "inconclusive", ai.Verdict, "%v", ai.Explanation)
	require.Nil(t, ai.Score)
	require.Contains(t, fmt.Sprint(ai.Explanation), "fewer than the 2500 needed on each (traffic.min_requests)")

	// The verdicts as events, in the events API.
	r = get(t, srv.URL, "/api/v1/events", url.Values{"name": {"change_impact"}, "match": {`change_id="` + d2 + `"`}})
	require.Equal(t, http.StatusOK, r.code, r.body)
	var listed struct {
		Events []struct {
			ID         string            `json:"id"`
			Attributes map[string]string `json:"attributes"`
		} `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &listed))
	require.Len(t, listed.Events, 1)
	require.Equal(t, map[string]string{
		"service": "web", "version": "2", "commit_timestamp": at(5 * m),
		"change_id": d2, "change_name": "deploy", "change_service": "web", "verdict": "fail", "score": "0",
		"failing_signals": "error-ratio", "change_start": unixString(base.Add(6 * m)), "change_end": unixString(base.Add(9 * m)),
		"lead_time_seconds": "240", "judgement": "initial",
	}, listed.Events[0].Attributes)
	require.Equal(t, a2.EventID, listed.Events[0].ID)

	// ... and as series (written just after the events).
	for _, id := range []string{d1, d2, d3, canary} {
		waitValue(t, srv.URL, `count(change_impact_score{change_id="`+id+`"})`, 1)
	}
	waitValue(t, srv.URL, `count(change_deployments_total{service="idle"})`, 1)
	require.Equal(t, 0.0, instant(t, srv.URL, `change_impact_score{change_id="`+d2+`"}`))
	require.Equal(t, *a1.Score, instant(t, srv.URL, `change_impact_score{change_id="`+d1+`",verdict="pass",service="web",version="1"}`))
	require.Greater(t, instant(t, srv.URL, `change_impact_signal_ratio{change_id="`+d2+`",signal="error-ratio",comparison="before_after"}`), 5.0)
	require.Equal(t, 1.0, instant(t, srv.URL, `count(last9_change_events{event_name="change_impact",verdict="inconclusive"})`))

	// DORA, from the events sent: web had 3 deploys, 1 failed (d2, from
	// 6m) and was restored by d3 (ended at 15m): 540 s; lead times 6m, 4m,
	// 4m from the commit timestamps.
	dora := map[string]float64{
		"change_deployments_total":       3,
		"change_failures_total":          1,
		"change_lead_time_seconds_sum":   (6*m + 4*m + 4*m).Seconds(),
		"change_lead_time_seconds_count": 3,
		"change_restore_seconds_sum":     (15*m - 6*m).Seconds(),
		"change_restore_seconds_count":   1,
	}
	for metric, want := range dora {
		require.Equal(t, want, instant(t, srv.URL, metric+`{service="web",event_name="deploy"}`), metric)
	}
	require.Equal(t, 1.0/3, instant(t, srv.URL, `change_failures_total{service="web"} / change_deployments_total{service="web"}`))
	require.Equal(t, 1.0, instant(t, srv.URL, `change_deployments_total{service="pay",event_name="canary-step"}`))
	require.Equal(t, 1.0, instant(t, srv.URL, `change_failures_total{service="pay",event_name="canary-step"}`))

	// The gate: web's latest deploy (d3) passed; pay's canary failed; idle
	// has no data; an unknown service has no change.
	gate := func(body string) (int, map[string]any) {
		r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/gates:evaluate", body)
		var out map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.body), &out), r.body)
		return r.code, out
	}
	code, g := gate(`{"service":"web"}`)
	require.Equal(t, http.StatusOK, code, g)
	require.Equal(t, true, g["allowed"])
	require.Equal(t, d3, g["change_id"])
	require.Equal(t, "recorded", g["source"])
	code, g = gate(`{"service":"pay","dry_run":true}`)
	require.Equal(t, http.StatusPreconditionFailed, code, g)
	require.Equal(t, "block", g["decision"])
	require.Contains(t, fmt.Sprint(g["reasons"]), "error-ratio")
	code, g = gate(`{"service":"pay","dry_run":true,"always_ok":true}`)
	require.Equal(t, http.StatusOK, code, g)
	require.Equal(t, false, g["allowed"])
	code, g = gate(`{"service":"idle"}`)
	require.Equal(t, http.StatusPreconditionFailed, code, g)
	require.Equal(t, "inconclusive", g["verdict"])
	require.NotEmpty(t, g["event_id"], "a gate's decision is recorded unless dry_run")
	code, g = gate(`{"service":"web","event_id":"` + d2 + `","signals":["latency-p99"],"dry_run":true}`)
	require.Equal(t, http.StatusOK, code, g) // latency did not move
	require.Equal(t, "judged", g["source"])
	code, g = gate(`{"service":"nosuch"}`)
	require.Equal(t, http.StatusNotFound, code, g)
	require.Contains(t, g["message"], `no change of service "nosuch"`)
	code, g = gate(`{"service":"web","colour":"red"}`)
	require.Equal(t, http.StatusBadRequest, code, g)
	require.Contains(t, g["message"], "colour")
	code, g = gate(`{"service":"web","signals":["nosuch"]}`)
	require.Equal(t, http.StatusBadRequest, code, g)
	require.Contains(t, g["message"], "signals:")

	// The same over gRPC, levitated.v1.ImpactService on the same port.
	conn, err := grpc.NewClient(strings.TrimPrefix(srv.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ic := levitatedv1.NewImpactServiceClient(conn)
	ctx := context.Background()
	got, err := ic.GetImpact(ctx, &levitatedv1.GetImpactRequest{Id: d2})
	require.NoError(t, err)
	gj := got.GetJudgement()
	require.Equal(t, "fail", gj.GetVerdict())
	require.Equal(t, 0.0, gj.GetScore())
	require.Equal(t, a2.Failing, gj.GetFailingSignals())
	require.Equal(t, a2.Explanation, gj.GetExplanation())
	require.Equal(t, a2.EventID, gj.GetEventId())
	require.Equal(t, "initial", gj.GetPhase())
	require.Equal(t, d2, gj.GetChange().GetId())
	require.Equal(t, "2", gj.GetChange().GetAttributes()["version"])
	require.Equal(t, "before_after", gj.GetComparisons()[0].GetKind())
	for _, s := range gj.GetComparisons()[0].GetSignals() {
		if s.GetSignal() == "error-ratio" {
			require.Equal(t, "High", s.GetClassification())
			require.Greater(t, s.GetRatio(), 5.0)
			require.Greater(t, s.GetShiftLower(), 0.0)
		}
	}
	_, err = ic.GetImpact(ctx, &levitatedv1.GetImpactRequest{Id: "nosuch"})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	_, err = ic.GetImpact(ctx, &levitatedv1.GetImpactRequest{Id: scaleUp})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "not judged")
	gr, err := ic.EvaluateGate(ctx, &levitatedv1.EvaluateGateRequest{Service: "web"})
	require.NoError(t, err)
	require.True(t, gr.GetAllowed())
	require.Equal(t, "promote", gr.GetDecision())
	require.Equal(t, d3, gr.GetChangeId())
	require.Equal(t, "recorded", gr.GetSource())
	require.NotEmpty(t, gr.GetEventId())
	gr, err = ic.EvaluateGate(ctx, &levitatedv1.EvaluateGateRequest{Service: "pay", DryRun: true})
	require.NoError(t, err, "a block is an answer, not an error")
	require.False(t, gr.GetAllowed())
	require.Equal(t, "block", gr.GetDecision())
	require.Empty(t, gr.GetEventId())
	require.Contains(t, fmt.Sprint(gr.GetReasons()), "error-ratio")
	_, err = ic.EvaluateGate(ctx, &levitatedv1.EvaluateGateRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "service")
	_, err = ic.EvaluateGate(ctx, &levitatedv1.EvaluateGateRequest{Service: "nosuch"})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	srv.stop()

	// Phase 3: another restart judges nothing twice. A new change is
	// judged after the older ones, which are due first, so once it is
	// judged the scheduler has been over them all.
	srv = startImpactServer(t, dir, config, false)
	defer srv.stop()
	late := deploy("deploy", "idle", 10*m, 11*m, -1, "")
	require.Equal(t, "inconclusive", waitImpact(t, srv.URL, late).Verdict)
	r = get(t, srv.URL, "/api/v1/events", url.Values{"name": {"change_impact"}})
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.NoError(t, json.Unmarshal([]byte(r.body), &listed))
	perChange := map[string]int{}
	for _, e := range listed.Events {
		perChange[e.Attributes["change_id"]]++
	}
	require.Equal(t, map[string]int{d1: 1, d2: 1, d3: 1, canary: 1, idle: 1, late: 1}, perChange)
}

// TestLateDataIsJudgedAgain: with a grace, a change whose first judgement
// came before the end of its grace is judged again then, once. The deploy
// of "late" is judged inconclusive while its metrics since it started (with
// 30 % errors) are still missing: a lagging writer; they arrive, and at the end of the grace
// the final judgement, fail, is recorded, superseding the first: the impact
// API and the gate answer it, the DORA series count the change once,
// as failed. The deploy of "steady", whose data were complete, is judged
// again and nothing is recorded. A restart judges nothing again.
func TestLateDataIsJudgedAgain(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(t.TempDir(), "impact.yml")
	require.NoError(t, os.WriteFile(config, []byte("events:\n  delay: 10s\n  grace: 5m\n"), 0o600))
	m := time.Minute
	base := time.Now().Truncate(10 * time.Second).Add(-20 * m)
	at := func(d time.Duration) string { return base.Add(d).UTC().Format(time.RFC3339) }
	end := base.Add(11 * m)
	var clock atomic.Int64 // the scheduler's, in Unix nanoseconds
	clock.Store(end.Add(-m).UnixNano())
	run := func() stoppable { return startWithClock(t, dir, config, &clock) }
	srv := run()
	onTime := redPhase{0, 6 * m, "", 100, 0.01}
	writeRED(t, srv.URL, "late", base, 7, onTime)
	writeRED(t, srv.URL, "steady", base, 8, redPhase{0, 11 * m, "", 100, 0.01})
	deploy := func(service string, to time.Duration) string {
		id := postEvent(t, srv.URL, fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":%q}}`, at(6*m), service))
		postEvent(t, srv.URL, fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"service":%q}}`, at(to), service))
		return id
	}
	late := deploy("late", 11*m)
	steady := deploy("steady", 11*m-10*time.Second) // due first, in each phase

	clock.Store(end.Add(30 * time.Second).UnixNano())
	first := waitImpact(t, srv.URL, late)
	require.Equal(t, "inconclusive", first.Verdict, "%v", first.Explanation)
	require.Equal(t, "pass", waitImpact(t, srv.URL, steady).Verdict)

	// The missing minutes arrive (the same samples before them again).
	writeRED(t, srv.URL, "late", base, 7, onTime, redPhase{6 * m, 11 * m, "", 100, 0.30})
	clock.Store(end.Add(5*m + 30*time.Second).UnixNano())
	type phased struct {
		impactAnswer
		Phase      string `json:"phase"`
		Supersedes string `json:"supersedes"`
	}
	var final phased
	for range 600 {
		r := get(t, srv.URL, "/api/v1/events/"+late+"/impact", nil)
		require.Equal(t, http.StatusOK, r.code, r.body)
		require.NoError(t, json.Unmarshal([]byte(r.body), &final))
		if final.Phase == "final" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, "final", final.Phase)
	require.Equal(t, "fail", final.Verdict, "%v", final.Explanation)
	require.Contains(t, final.Failing, "error-ratio")
	require.Equal(t, first.EventID, final.Supersedes)

	check := func(srv stoppable, more ...string) {
		t.Helper()
		r := get(t, srv.URL, "/api/v1/events", url.Values{"name": {"change_impact"}})
		require.Equal(t, http.StatusOK, r.code, r.body)
		var listed struct {
			Events []struct {
				ID         string            `json:"id"`
				Attributes map[string]string `json:"attributes"`
			} `json:"events"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.body), &listed))
		got := map[string][]string{}
		for _, e := range listed.Events {
			a := e.Attributes
			got[a["change_id"]] = append(got[a["change_id"]], a["judgement"]+" "+a["verdict"]+" "+a["supersedes"])
		}
		want := map[string][]string{
			late:   {"initial inconclusive ", "final fail " + first.EventID},
			steady: {"initial pass "},
		}
		for _, id := range more {
			want[id] = []string{"initial pass "}
		}
		require.Equal(t, want, got)
		// The DORA series count the change once, with its final verdict.
		waitValue(t, srv.URL, `last_over_time(change_failures_total{service="late"}[1h])`, 1)
		waitValue(t, srv.URL, `last_over_time(change_deployments_total{service="late"}[1h])`, 1)
		waitValue(t, srv.URL, `count_over_time(change_impact_score{change_id="`+late+`"}[1h])`, 1) // the first, inconclusive, has no score
		waitValue(t, srv.URL, `last_over_time(change_impact_score{change_id="`+late+`",verdict="fail"}[1h])`, 0)
		waitValue(t, srv.URL, `count_over_time(change_impact_score{change_id="`+steady+`"}[1h])`, 1)
	}
	// The scheduler has been over steady (due before late's final) in the
	// tick that recorded late's final judgement.
	check(srv)
	code, g := func() (int, map[string]any) {
		r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/gates:evaluate", `{"service":"late","dry_run":true}`)
		var out map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.body), &out), r.body)
		return r.code, out
	}()
	require.Equal(t, http.StatusPreconditionFailed, code, g)
	require.Equal(t, "recorded", g["source"])
	require.Equal(t, "fail", g["verdict"])
	srv.stop()

	// A restart judges nothing again.
	srv = run()
	defer srv.stop()
	other := deploy("steady", 11*m) // a new change, judged after the others were considered
	waitImpact(t, srv.URL, other)
	check(srv, other)
}

// TestOpenWindowIsJudgedEarly: with open_after, a window still open is
// judged once that long after its start, over the time since its start
// (judgement "early"); the gate still judges an open window up to now;
// once the window closes its initial judgement supersedes the early one,
// and the DORA series count the change once.
func TestOpenWindowIsJudgedEarly(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(t.TempDir(), "impact.yml")
	require.NoError(t, os.WriteFile(config, []byte("events:\n  delay: 10s\n  open_after: 3m\n"), 0o600))
	m := time.Minute
	base := time.Now().Truncate(10 * time.Second).Add(-20 * m)
	at := func(d time.Duration) string { return base.Add(d).UTC().Format(time.RFC3339) }
	var clock atomic.Int64
	clock.Store(base.Add(8 * m).UnixNano())
	srv := startWithClock(t, dir, config, &clock)
	defer srv.stop()
	u := srv.URL

	writeRED(t, u, "slow", base, 9, redPhase{0, 12 * m, "", 100, 0.01})
	id := postEvent(t, u, fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"slow"}}`, at(6*m)))
	type phased struct {
		impactAnswer
		Phase  string `json:"phase"`
		Change struct {
			End  time.Time `json:"end"`
			Open bool      `json:"open"`
		} `json:"change"`
	}
	impact := func() (int, phased) {
		r := get(t, u, "/api/v1/events/"+id+"/impact", nil)
		var a phased
		if r.code == http.StatusOK {
			require.NoError(t, json.Unmarshal([]byte(r.body), &a))
		}
		return r.code, a
	}
	code, _ := impact()
	require.Equal(t, http.StatusNotFound, code, "not judged before open_after")

	clock.Store(base.Add(9*m + 10*time.Second).UnixNano())
	var a phased
	for range 600 {
		if code, a = impact(); code == http.StatusOK {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	require.Equal(t, "early", a.Phase)
	require.Equal(t, "pass", a.Verdict, "%v", a.Explanation)
	require.True(t, a.Change.Open)
	require.True(t, base.Add(9*m).Equal(a.Change.End), "judged over [start, start+open_after): %v", a.Change.End)
	r := sendJSON(t, http.MethodPost, u+"/api/v1/gates:evaluate", `{"service":"slow","dry_run":true}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"source":"judged"`, "the gate judges an open window up to now")

	postEvent(t, u, fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"service":"slow"}}`, at(11*m)))
	clock.Store(base.Add(11*m + 20*time.Second).UnixNano())
	for range 600 {
		if _, a = impact(); a.Phase == "initial" {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	require.Equal(t, "initial", a.Phase)
	require.False(t, a.Change.Open)
	r = get(t, u, "/api/v1/events", url.Values{"name": {"change_impact"}})
	require.Equal(t, http.StatusOK, r.code, r.body)
	var listed struct {
		Events []struct {
			Attributes map[string]string `json:"attributes"`
		} `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &listed))
	var phases []string
	for _, e := range listed.Events {
		phases = append(phases, e.Attributes["judgement"])
	}
	require.Equal(t, []string{"early", "initial"}, phases)
	waitValue(t, u, `last_over_time(change_deployments_total{service="slow"}[1h])`, 1)
}

// startWithClock starts a server on dir whose impact scheduler reads the
// impact configuration file config and tells the time from clock (Unix
// nanoseconds), looking every 50 ms; out-of-order samples are accepted two
// hours back, so the tests can write the minutes they judge.
func startWithClock(t *testing.T, dir, config string, clock *atomic.Int64) stoppable {
	t.Helper()
	return startOnDirWith(t, dir, func(o *server.Options) {
		o.Storage.OutOfOrderWindow = 2 * time.Hour
		o.Impact.ConfigFile = config
		o.Impact.Interval = 50 * time.Millisecond
		o.Impact.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
}

// TestImpactReloadRefusesSignalsWithoutData: POST /-/reload re-reads the
// impact configuration too; a file with a signal whose metric has no series
// in the store is refused (500, with the file, line and reason) and the
// configuration in force stays, as the gate shows (it names the signals of
// the configuration in force). On the empty store of a fresh start the
// same file was taken.
func TestImpactReloadRefusesSignalsWithoutData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "impact.yml")
	first := "signals:\n  - {name: errors, query: 'sum(rate(http_requests_total{service=\"$service\",code=\"500\"}[1m]))'}\n  - {name: typo, query: 'sum(rate(htp_requests_total{service=\"$service\"}[1m]))'}\n"
	require.NoError(t, os.WriteFile(path, []byte(first), 0o600))
	srv := startOnDirWith(t, t.TempDir(), func(o *server.Options) {
		o.Impact.ConfigFile = path
		o.Impact.Disabled = true
	})
	defer srv.stop()
	u := srv.URL
	base := time.Now().Add(-20 * time.Minute).Truncate(10 * time.Second)
	writeRED(t, u, "web", base, 1, redPhase{0, 15 * time.Minute, "", 50, 0.01})
	start := base.Add(5 * time.Minute)
	postEvent(t, u, fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"web"}}`, start.Format(time.RFC3339)))
	postEvent(t, u, fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"service":"web"}}`, start.Add(5*time.Minute).Format(time.RFC3339)))
	gateNames := func() string {
		t.Helper()
		r := sendJSON(t, http.MethodPost, u+"/api/v1/gates:evaluate", `{"service":"web","signals":["none"],"dry_run":true}`)
		require.Equal(t, http.StatusBadRequest, r.code, r.body)
		return r.body
	}
	require.Contains(t, gateNames(), "(it has errors, typo)", "the fresh start took the file: the store was empty")

	// Now the store has series: the same file is refused, nothing changes.
	r := sendJSON(t, http.MethodPost, u+"/-/reload", "")
	require.Equal(t, http.StatusInternalServerError, r.code, r.body)
	require.Contains(t, r.body, path+":3: signals[1].query: has no data: the store holds no series of htp_requests_total")
	require.Contains(t, r.body, "the one in force stays")
	require.Contains(t, gateNames(), "(it has errors, typo)")

	require.NoError(t, os.WriteFile(path, []byte("signals:\n  - {name: errors, query: 'sum(rate(http_requests_total{service=\"$service\",code=\"500\"}[1m]))'}\n  - {name: p99, query: 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service=\"$service\"}[1m])))'}\n"), 0o600))
	r = sendJSON(t, http.MethodPost, u+"/-/reload", "")
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, gateNames(), "(it has errors, p99)")
}
