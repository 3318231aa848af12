package kayenta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/kayenta"
	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

// env is a Kayenta API over a real store in dir, served on loopback.
type env struct {
	t    testing.TB
	dir  string
	db   *storage.DB
	svc  *kayenta.Service
	url  string
	stop func()
}

type envOptions struct {
	// run starts the workers; without it executions stay queued.
	run bool
	// wrap, if set, wraps the store's queryable.
	wrap func(promstorage.Queryable) promstorage.Queryable
	opts kayenta.Options
}

func openEnv(t testing.TB, dir string, o envOptions) *env {
	t.Helper()
	db, err := storage.Open(dir, storage.Options{Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	var q promstorage.Queryable = db
	if o.wrap != nil {
		q = o.wrap(q)
	}
	o.opts.Registerer = prometheus.NewRegistry()
	svc, err := kayenta.New(storagetest.Namespace(t, db, storage.OwnerAnalysis), db, &rangequery.Runner{Engine: engine, Queryable: q}, o.opts)
	require.NoError(t, err)
	mux := http.NewServeMux()
	svc.Register(mux)
	// The server's authentication layer puts the tenant in the context; here
	// a test header stands in for it.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := r.Header.Get("X-Test-Tenant"); name != "" {
			r = r.WithContext(tenant.NewContext(r.Context(), name))
		}
		mux.ServeHTTP(w, r)
	}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if o.run {
		go func() { done <- svc.Run(ctx) }()
	} else {
		done <- nil
	}
	e := &env{t: t, dir: dir, db: db, svc: svc, url: srv.URL}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		srv.Close()
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, engine.Close())
		require.NoError(t, db.Close())
	}
	t.Cleanup(e.stop)
	return e
}

// do sends a request with a JSON body (a string, or a value to encode)
// and returns the status and the body.
func (e *env) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(e.t, err)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	require.NoError(e.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, b
}

// ok sends a request that must answer 200 and decodes the answer into out.
func (e *env) ok(method, path string, body, out any) {
	e.t.Helper()
	code, b := e.do(method, path, body)
	require.Equal(e.t, http.StatusOK, code, "%s %s: %s", method, path, b)
	if out != nil {
		require.NoError(e.t, json.Unmarshal(b, out), string(b))
	}
}

// wait polls an execution until it is complete.
func (e *env) wait(id string) map[string]any {
	e.t.Helper()
	for range 3000 {
		var st map[string]any
		e.ok(http.MethodGet, "/canary/"+id, nil, &st)
		if st["complete"] == true {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("execution %s did not complete", id)
	return nil
}

// canaryData writes an hour (and a little more) of a checkout service's
// metrics at 10 s steps for each version: request counters by code, a
// latency, CPU and memory gauge. errorRatio gives each version's share of
// 5xx responses; everything else is drawn from the same distributions.
func canaryData(t *testing.T, db *storage.DB, end time.Time, errorRatio map[string]float64) {
	t.Helper()
	ctx := context.Background()
	app := db.AppenderV2(ctx)
	start := end.Add(-time.Hour - 5*time.Minute)
	seed := int64(1)
	for _, version := range slices.Sorted(maps.Keys(errorRatio)) {
		seed++
		r := rand.New(rand.NewSource(seed))
		ls := func(name string, kv ...string) labels.Labels {
			return labels.FromStrings(append([]string{"__name__", name, "job", "checkout", "version", version}, kv...)...)
		}
		ok, errs := ls("http_requests_total", "code", "200"), ls("http_requests_total", "code", "500")
		lat, cpu, mem := ls("request_duration_seconds"), ls("process_cpu_usage"), ls("process_memory_bytes")
		var okTotal, errTotal float64
		for ts := start; !ts.After(end); ts = ts.Add(10 * time.Second) {
			n := 500 + 25*r.NormFloat64()
			e := n * errorRatio[version] * (1 + 0.2*r.NormFloat64())
			okTotal += n - max(e, 0)
			errTotal += max(e, 0)
			ms := ts.UnixMilli()
			for _, s := range []struct {
				ls labels.Labels
				v  float64
			}{
				{ok, okTotal}, {errs, errTotal},
				{lat, 0.2 + 0.01*r.NormFloat64()},
				{cpu, 0.5 + 0.05*r.NormFloat64()},
				{mem, 2e8 + 1e6*r.NormFloat64()},
			} {
				_, err := app.Append(0, s.ls, 0, ms, s.v, nil, nil, promstorage.AOptions{})
				require.NoError(t, err)
			}
		}
	}
	require.NoError(t, app.Commit())
}

// checkoutConfig is a canary config as a Spinnaker user writes one: four
// metrics in four groups of equal weight, each query in a different one of
// Kayenta's Prometheus styles. The error ratio is critical beyond twice
// the baseline.
const checkoutConfig = `{
  "name": "checkout-canary",
  "applications": ["checkout"],
  "configVersion": "1",
  "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
  "metrics": [
    {"name": "error-ratio",
     "query": {"type": "prometheus", "serviceType": "prometheus",
               "customInlineTemplate": "PromQL:sum(rate(http_requests_total{job=\"checkout\",version=\"${scope}\",code=~\"5..\"}[1m])) / sum(rate(http_requests_total{job=\"checkout\",version=\"${scope}\"}[1m]))"},
     "groups": ["errors"],
     "analysisConfigurations": {"canary": {"direction": "increase", "critical": true, "effectSize": {"criticalIncrease": 2}}},
     "scopeName": "default"},
    {"name": "latency",
     "query": {"type": "prometheus", "serviceType": "prometheus", "metricName": "request_duration_seconds",
               "customInlineTemplate": "job=\"checkout\",version=\"${scope}\""},
     "groups": ["latency"],
     "analysisConfigurations": {"canary": {"direction": "increase"}},
     "scopeName": "default"},
    {"name": "cpu",
     "query": {"type": "prometheus", "serviceType": "prometheus", "metricName": "process_cpu_usage",
               "labelBindings": ["job=\"checkout\""], "customFilterTemplate": "by-version"},
     "groups": ["saturation"],
     "scopeName": "default"},
    {"name": "memory",
     "query": {"type": "prometheus", "serviceType": "prometheus",
               "customInlineTemplate": "PromQL:avg(process_memory_bytes{version=\"${scope}\"})"},
     "groups": ["memory"],
     "scopeName": "default"}
  ],
  "templates": {"by-version": "version=\"${scope}\""},
  "classifier": {"groupWeights": {"errors": 25, "latency": 25, "saturation": 25, "memory": 25}}
}`

// argoRequest is the body Argo Rollouts' Kayenta provider posts.
func argoRequest(control, experiment string, start, end time.Time, step int, pass, marginal int) string {
	sc := func(s string) string {
		return fmt.Sprintf(`{"scope":%q,"location":"","step":%d,"start":%q,"end":%q}`, s, step, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	return fmt.Sprintf(`{"scopes":{"default":{"controlScope":%s,"experimentScope":%s}},"thresholds":{"pass":%d,"marginal":%d}}`,
		sc(control), sc(experiment), pass, marginal)
}
