package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// rulesFile is a rule file evaluated every second: recording rules (one
// with an event-window function) and an alert on a gauge the test sets.
const rulesFile = `groups:
  - name: red
    interval: 1s
    rules:
      - record: service:errors:rate1m
        expr: sum by (service) (rate(http_requests_total{code="500"}[1m]))
      - record: service:errors_since_deploy:increase
        expr: increase_since(http_requests_total{code="500"}[1h], change_event_active{event_name="deploy"})
      - alert: CanaryErrors
        expr: canary_error_ratio > 0.1
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} errors at {{ $value }}"
`

// writeRuleFile writes content to dir/name and returns its path.
func writeRuleFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// writeErrorsAndRatio remote-writes checkout's error counter every 15 s for the
// 9¾ minutes up to now (+1 per sample), and canary_error_ratio = ratio now.
// The oldest sample stays 15 s inside the 10-minute out-of-order window: a
// rule evaluation appending between now and this request's arrival moves the
// tenant's newest timestamp past now, and a sample exactly 10 minutes old
// would then be refused as too old (TestRulesForStateSurvivesRestart failed
// so once under load).
func writeErrorsAndRatio(t *testing.T, base string, header http.Header, ratio float64) {
	t.Helper()
	now := time.Now()
	errs := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "code", "500", "service", "checkout")}
	for i := 39; i >= 0; i-- {
		errs.Samples = append(errs.Samples, prompb.Sample{Timestamp: now.Add(-time.Duration(i) * 15 * time.Second).UnixMilli(), Value: float64(40 - i)})
	}
	gauge := prompb.TimeSeries{Labels: labelsV1("__name__", "canary_error_ratio", "service", "checkout"),
		Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: ratio}}}
	writeWithHeader(t, base, header, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{errs, gauge}})
}

func writeWithHeader(t *testing.T, base string, header http.Header, wr *prompb.WriteRequest) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/write", strings.NewReader(string(encodeV1(t, wr))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentTypeV1)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	for k, v := range header {
		req.Header[k] = v
	}
	r := do(t, req)
	require.Equal(t, http.StatusNoContent, r.code, r.body)
}

// apiAlert is an alert of /api/v1/alerts.
type apiAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

func alerts(t *testing.T, base string, header http.Header) []apiAlert {
	t.Helper()
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []apiAlert `json:"alerts"`
		} `json:"data"`
	}
	r := getWithHeader(t, base, "/api/v1/alerts", nil, header)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.NoError(t, json.Unmarshal([]byte(r.body), &out))
	require.Equal(t, "success", out.Status)
	return out.Data.Alerts
}

func getWithHeader(t *testing.T, base, path string, params url.Values, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, req)
}

// ruleGroups is /api/v1/rules in Prometheus' shape, as Grafana reads it.
type ruleGroups struct {
	Status string `json:"status"`
	Data   struct {
		Groups []struct {
			Name           string    `json:"name"`
			File           string    `json:"file"`
			Interval       float64   `json:"interval"`
			LastEvaluation time.Time `json:"lastEvaluation"`
			Rules          []struct {
				Name           string            `json:"name"`
				Query          string            `json:"query"`
				Type           string            `json:"type"`
				Health         string            `json:"health"`
				LastError      string            `json:"lastError"`
				Labels         map[string]string `json:"labels"`
				State          string            `json:"state"`
				Duration       float64           `json:"duration"`
				LastEvaluation time.Time         `json:"lastEvaluation"`
				Alerts         []apiAlert        `json:"alerts"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"data"`
}

func getRules(t *testing.T, base string, header http.Header) ruleGroups {
	t.Helper()
	var out ruleGroups
	r := getWithHeader(t, base, "/api/v1/rules", nil, header)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.NoError(t, json.Unmarshal([]byte(r.body), &out), r.body)
	return out
}

// instantAt runs an instant query at ts and returns each series' labels and
// value.
func instantAt(t *testing.T, base string, header http.Header, expr string, ts time.Time) map[string]string {
	t.Helper()
	r := getWithHeader(t, base, "/api/v1/query", url.Values{"query": {expr}, "time": {unixString(ts)}}, header)
	require.Equal(t, http.StatusOK, r.code, r.body)
	q := decodeQuery(t, r)
	out := map[string]string{}
	for _, s := range q.Data.Result {
		delete(s.Metric, "__name__")
		out[fmt.Sprint(s.Metric)] = s.Value[1].(string)
	}
	return out
}

// recorded returns the samples a recording rule wrote in the last minute:
// timestamp → labels → value.
func recorded(t *testing.T, base string, header http.Header, metric string) map[time.Time]map[string]string {
	t.Helper()
	r := getWithHeader(t, base, "/api/v1/query", url.Values{"query": {metric + "[1m]"}, "time": {unixString(time.Now())}}, header)
	require.Equal(t, http.StatusOK, r.code, r.body)
	q := decodeQuery(t, r)
	out := map[time.Time]map[string]string{}
	for _, s := range q.Data.Result {
		delete(s.Metric, "__name__")
		for _, v := range s.Values {
			sec, err := strconv.ParseFloat(fmt.Sprint(v[0]), 64)
			require.NoError(t, err)
			ts := time.UnixMilli(int64(sec*1000 + 0.5))
			if out[ts] == nil {
				out[ts] = map[string]string{}
			}
			out[ts][fmt.Sprint(s.Metric)] = v[1].(string)
		}
	}
	return out
}

// waitFor polls cond every 100 ms until it holds, failing after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRulesRecordAndAlert: remote-written data and a deploy event; the
// recording rules' output equals the same expressions queried directly at
// the timestamps they were evaluated at (including an event-window
// function); the alert goes pending → firing → inactive, with ALERTS and
// ALERTS_FOR_STATE written; /api/v1/rules has Prometheus' shape.
func TestRulesRecordAndAlert(t *testing.T) {
	dir := t.TempDir()
	file := writeRuleFile(t, dir, "red.yml", rulesFile)
	srv := servertest.Start(t, func(o *server.Options) { o.Rules.Files = []string{filepath.Join(dir, "*.yml")} })

	r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/events", fmt.Sprintf(
		`{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"checkout","version":"2.0"}}`,
		time.Now().Add(-5*time.Minute).UTC().Format(time.RFC3339)))
	require.Equal(t, http.StatusOK, r.code, r.body)
	writeErrorsAndRatio(t, srv.URL, nil, 0.5)

	// Pending, then firing.
	var states []string
	var activeAt time.Time
	waitFor(t, 20*time.Second, "the alert to fire", func() bool {
		as := alerts(t, srv.URL, nil)
		if len(as) == 0 {
			return false
		}
		require.Len(t, as, 1)
		a := as[0]
		if len(states) == 0 || states[len(states)-1] != a.State {
			states = append(states, a.State)
		}
		activeAt = a.ActiveAt
		require.Equal(t, map[string]string{"alertname": "CanaryErrors", "service": "checkout", "severity": "page"}, a.Labels)
		require.Equal(t, "checkout errors at 0.5", a.Annotations["summary"])
		return a.State == "firing"
	})
	require.Equal(t, []string{"pending", "firing"}, states)

	// The rules manager sets the alert's state before it appends the
	// evaluation's ALERTS samples: the API may show "firing" a moment before
	// they are committed.
	wantAlerts := map[string]string{
		"map[alertname:CanaryErrors alertstate:firing service:checkout severity:page]": "1",
	}
	waitFor(t, 5*time.Second, "the firing ALERTS sample", func() bool {
		return len(instantAt(t, srv.URL, nil, `ALERTS{alertstate="firing"}`, time.Now())) > 0
	})
	now := time.Now()
	require.Equal(t, wantAlerts, instantAt(t, srv.URL, nil, `ALERTS`, now))
	require.Equal(t, map[string]string{
		"map[alertname:CanaryErrors service:checkout severity:page]": strconv.FormatInt(activeAt.Unix(), 10),
	}, instantAt(t, srv.URL, nil, `ALERTS_FOR_STATE`, now))

	// Each recorded sample equals its expression at its timestamp.
	for metric, expr := range map[string]string{
		"service:errors:rate1m":                `sum by (service) (rate(http_requests_total{code="500"}[1m]))`,
		"service:errors_since_deploy:increase": `increase_since(http_requests_total{code="500"}[1h], change_event_active{event_name="deploy"})`,
	} {
		got := recorded(t, srv.URL, nil, metric)
		require.GreaterOrEqual(t, len(got), 2, metric)
		for ts, series := range got {
			want := instantAt(t, srv.URL, nil, expr, ts)
			require.NotEmpty(t, want, "%s at %v", expr, ts)
			require.Equal(t, want, series, "%s at %v", metric, ts)
		}
	}

	// Grafana's rule view reads this shape.
	rg := getRules(t, srv.URL, nil)
	require.Equal(t, "success", rg.Status)
	require.Len(t, rg.Data.Groups, 1)
	g := rg.Data.Groups[0]
	require.Equal(t, "red", g.Name)
	require.Equal(t, file, g.File)
	require.Equal(t, 1.0, g.Interval)
	require.False(t, g.LastEvaluation.IsZero())
	require.Len(t, g.Rules, 3)
	for _, rule := range g.Rules {
		require.Equal(t, "ok", rule.Health, "%s: %s", rule.Name, rule.LastError)
	}
	require.Equal(t, "recording", g.Rules[0].Type)
	require.Equal(t, "alerting", g.Rules[2].Type)
	require.Equal(t, "firing", g.Rules[2].State)
	require.Equal(t, 2.0, g.Rules[2].Duration)
	require.Len(t, g.Rules[2].Alerts, 1)

	// The ratio drops: the alert resolves and leaves /api/v1/alerts.
	writeErrorsAndRatio(t, srv.URL, nil, 0)
	waitFor(t, 20*time.Second, "the alert to resolve", func() bool { return len(alerts(t, srv.URL, nil)) == 0 })

	// Prometheus' rule metrics.
	m := getWithHeader(t, srv.URL, "/metrics", nil, nil)
	require.Contains(t, m.body, `prometheus_rule_evaluations_total{rule_group="`+file+`;red"}`)
	require.Contains(t, m.body, `prometheus_rule_group_rules{rule_group="`+file+`;red"} 3`)
}

// TestRulesPerTenant: the rules of --rules.tenant-dir/<tenant>/ read and
// write only that tenant's series, and /api/v1/rules lists only the
// caller's tenant's groups.
func TestRulesPerTenant(t *testing.T) {
	dir := t.TempDir()
	writeRuleFile(t, dir, "team-a/red.yml", rulesFile)
	srv := servertest.Start(t, func(o *server.Options) {
		o.Rules.TenantDir = dir
		o.Security.TrustedProxy = true
	})
	teamA := http.Header{"X-Scope-Orgid": {"team-a"}}
	teamB := http.Header{"X-Scope-Orgid": {"team-b"}}
	writeErrorsAndRatio(t, srv.URL, teamA, 0.5)
	// team-b has a much larger error rate under the same names.
	errs := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "code", "500", "service", "checkout")}
	now := time.Now()
	for i := 40; i >= 0; i-- {
		errs.Samples = append(errs.Samples, prompb.Sample{Timestamp: now.Add(-time.Duration(i) * 15 * time.Second).UnixMilli(), Value: float64(1000 * (40 - i))})
	}
	writeWithHeader(t, srv.URL, teamB, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{errs}})

	waitFor(t, 20*time.Second, "team-a's alert to fire", func() bool {
		as := alerts(t, srv.URL, teamA)
		return len(as) == 1 && as[0].State == "firing"
	})
	require.Empty(t, alerts(t, srv.URL, teamB))
	require.Empty(t, alerts(t, srv.URL, nil))
	require.Len(t, getRules(t, srv.URL, teamA).Data.Groups, 1)
	require.Empty(t, getRules(t, srv.URL, teamB).Data.Groups)

	got := recorded(t, srv.URL, teamA, "service:errors:rate1m")
	require.NotEmpty(t, got)
	for ts, series := range got {
		require.Equal(t, instantAt(t, srv.URL, teamA, `sum by (service) (rate(http_requests_total{code="500"}[1m]))`, ts), series)
	}
	require.Empty(t, recorded(t, srv.URL, teamB, "service:errors:rate1m"), "team-a's rules wrote into team-b")
	require.Empty(t, recorded(t, srv.URL, nil, "service:errors:rate1m"))
}

// TestRulesBadFiles: each bad file is refused, at start and on reload,
// with its file, line and reason; on reload the rules in force keep
// running.
func TestRulesBadFiles(t *testing.T) {
	dir := t.TempDir()
	file := writeRuleFile(t, dir, "red.yml", rulesFile)
	srv := servertest.Start(t, func(o *server.Options) { o.Rules.Files = []string{file} })
	waitFor(t, 10*time.Second, "a first evaluation", func() bool {
		g := getRules(t, srv.URL, nil).Data.Groups
		return len(g) == 1 && !g[0].LastEvaluation.IsZero()
	})

	for name, tc := range map[string]struct{ content, want string }{
		"yaml syntax": {"groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n       labels: {}\n", file + `: yaml: line 3: did not find expected '-' indicator`},
		"unknown function": {"groups:\n  - name: a\n    rules:\n      - record: x\n        expr: no_such_function(up)\n",
			file + `: 5:15: group "a", rule 1, "x": could not parse expression: 1:1: parse error: unknown function with name "no_such_function"`},
		"duplicate group": {"groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n  - name: a\n    rules:\n      - record: y\n        expr: up\n",
			file + `: 6:5: groupname: "a" is repeated in the same file`},
		"bad template": {"groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up == 0\n        annotations:\n          summary: \"{{ $labels.instance \"\n",
			file + `: 4:9: group "a", rule 1, "X": annotation "summary": template: __alert_X:1: unclosed action`},
		"recording rule with for": {"groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n        for: 1m\n",
			file + `: 4:17: group "a", rule 1, "x": invalid field 'for' in recording rule`},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(file, []byte(tc.content), 0o644))
			r := do(t, mustRequest(t, http.MethodPost, srv.URL+"/-/reload"))
			require.Equal(t, http.StatusInternalServerError, r.code)
			require.Contains(t, r.body, "failed to reload config: rules not loaded, the rules in force are kept: ")
			require.Contains(t, r.body, tc.want)
			require.Error(t, srv.Reload(t.Context()))

			// The old group still runs.
			g := getRules(t, srv.URL, nil).Data.Groups
			require.Len(t, g, 1)
			require.Equal(t, "red", g[0].Name)
			last := g[0].LastEvaluation
			waitFor(t, 10*time.Second, "another evaluation of the old group", func() bool {
				return getRules(t, srv.URL, nil).Data.Groups[0].LastEvaluation.After(last)
			})

			// And a bad file stops a server from starting, with the same words.
			o := server.DefaultOptions()
			o.ListenAddress = "127.0.0.1:0"
			o.DataDir = t.TempDir()
			o.Rules.Files = []string{file}
			_, err := server.New(o)
			require.ErrorContains(t, err, tc.want)
		})
	}

	// A good file is taken on reload; GET is not a reload.
	require.NoError(t, os.WriteFile(file, []byte("groups:\n  - name: other\n    interval: 1s\n    rules:\n      - record: x\n        expr: vector(1)\n"), 0o644))
	require.Equal(t, http.StatusMethodNotAllowed, do(t, mustRequest(t, http.MethodGet, srv.URL+"/-/reload")).code)
	r := do(t, mustRequest(t, http.MethodPost, srv.URL+"/-/reload"))
	require.Equal(t, http.StatusOK, r.code, r.body)
	g := getRules(t, srv.URL, nil).Data.Groups
	require.Len(t, g, 1)
	require.Equal(t, "other", g[0].Name)

	// A named file that does not exist.
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = t.TempDir()
	o.Rules.Files = []string{filepath.Join(dir, "missing.yml")}
	_, err := server.New(o)
	require.ErrorContains(t, err, "--rules.file "+filepath.Join(dir, "missing.yml")+": no such file")
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	require.NoError(t, err)
	return req
}

// TestRulesForStateSurvivesRestart: an alert pending when levitated stops
// is pending again after a restart with the time it had spent pending
// kept (restored from ALERTS_FOR_STATE), not started afresh.
func TestRulesForStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	data := t.TempDir()
	file := writeRuleFile(t, dir, "slow.yml", strings.Replace(rulesFile, "for: 2s", "for: 10m", 1))
	start := func() (*server.Server, func()) {
		o := server.DefaultOptions()
		o.ListenAddress = "127.0.0.1:0"
		o.DataDir = data
		o.Rules.Files = []string{file}
		o.Rules.ForGracePeriod = time.Second
		s, err := server.New(o)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return s, func() { cancel(); require.NoError(t, <-done) }
	}
	s, stop := start()
	base := "http://" + s.Addr().String()
	writeErrorsAndRatio(t, base, nil, 0.5)
	var first apiAlert
	waitFor(t, 40*time.Second, "the alert to be pending for 8 s", func() bool {
		as := alerts(t, base, nil)
		if len(as) != 1 {
			return false
		}
		first = as[0]
		return time.Since(first.ActiveAt) > 8*time.Second
	})
	require.Equal(t, "pending", first.State)
	stop()

	restarted := time.Now()
	s, stop = start()
	defer stop()
	base = "http://" + s.Addr().String()
	writeErrorsAndRatio(t, base, nil, 0.5)
	// ALERTS_FOR_STATE's value is the alert's ActiveAt (Unix seconds) at
	// each evaluation. At the first evaluation after the restart, a fresh
	// alert would have been pending for next to no time; a restored one
	// has been pending as long as it was before the stop (its ActiveAt
	// shifted by the downtime). Comparing the two within one sample does not depend
	// on how long the restart took on a loaded machine.
	var evalAt, activeAt float64
	waitFor(t, 60*time.Second, "an evaluation of the alert after the restart", func() bool {
		r := getWithHeader(t, base, "/api/v1/query", url.Values{"query": {`ALERTS_FOR_STATE[10m]`}, "time": {unixString(time.Now())}}, nil)
		require.Equal(t, http.StatusOK, r.code, r.body)
		q := decodeQuery(t, r)
		for _, ser := range q.Data.Result {
			for _, v := range ser.Values {
				at, err := strconv.ParseFloat(fmt.Sprint(v[0]), 64)
				require.NoError(t, err)
				val, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64)
				require.NoError(t, err)
				if at >= float64(restarted.UnixMilli())/1000 {
					evalAt, activeAt = at, val
					return true
				}
			}
		}
		return false
	})
	pendingBefore := restarted.Sub(first.ActiveAt).Seconds()
	// Started afresh it would have been pending 0-3 s (Prometheus keeps
	// ActiveAt in whole seconds and may restore from the new process's
	// own first sample); restored, about the 8 s it had spent before.
	require.GreaterOrEqual(t, evalAt-activeAt, 6.0,
		"at its first evaluation after the restart the alert had been pending %.1f s: restored, it would have kept the %.1f s it had spent pending before the stop", evalAt-activeAt, pendingBefore)
	as := alerts(t, base, nil)
	require.Len(t, as, 1)
	again := as[0]
	require.Equal(t, "pending", again.State)
	// Restored: shifted by the downtime, so the time spent pending
	// before the stop counts.
	require.True(t, again.ActiveAt.After(first.ActiveAt), "restored %v, first %v", again.ActiveAt, first.ActiveAt)
}
