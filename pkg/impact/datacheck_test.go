package impact

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

// appendIn writes one sample of each series into tenant tn.
func appendIn(t *testing.T, db *storage.DB, tn string, series ...labels.Labels) {
	t.Helper()
	app := db.Appender(tenant.NewContext(context.Background(), tn))
	for _, ls := range series {
		_, err := app.Append(0, ls, time.Now().UnixMilli(), 1)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
}

// TestCheckDataRefusesSignalsWithoutData: over a real store, a template
// written in the file whose query cannot have a value for lack of series
// is refused with the file, line, field and the selectors; what may have a
// value passes; an empty store refuses nothing; the built-in defaults are
// not checked.
func TestCheckDataRefusesSignalsWithoutData(t *testing.T) {
	db := storagetest.Open(t, t.TempDir())
	p := levpromql.NewParser()
	ctx := context.Background()
	parse := func(body string) *Config {
		t.Helper()
		c, err := ParseConfig("impact.yml", []byte(body), p)
		require.NoError(t, err)
		return &c
	}
	tenants := func() []string { return db.TenantNames() }

	// An empty store: nothing can be told.
	bad := parse("signals:\n  - {name: e, query: 'sum(rate(nothing_total[1m]))'}\n")
	require.ErrorIs(t, bad.CheckData(ctx, db, tenants(), p), ErrStoreEmpty)

	appendIn(t, db, tenant.Default,
		labels.FromStrings("__name__", "http_requests_total", "service", "web", "code", "200"),
		labels.FromStrings("__name__", "lat_bucket", "service", "web", "le", "+Inf"))
	appendIn(t, db, "team-b", labels.FromStrings("__name__", "jobs_total", "queue", "mail"))

	defaults := DefaultConfig()
	require.NoError(t, defaults.CheckData(ctx, db, tenants(), p), "the defaults are not checked (a store has one of their two conventions)")

	for body, want := range map[string]string{
		"signals:\n  - {name: e, query: 'sum(rate(htp_requests_total{service=\"$service\"}[1m]))'}\n": "impact.yml:2: signals[0].query: has no data: the store holds no series of htp_requests_total, which it needs",
		// Without "or vector(0)", a ratio of errors that never happened has no value.
		"signals:\n  - {name: ok, query: 'sum(rate(http_requests_total[1m]))'}\n  - name: e\n    query: sum(rate(http_requests_total{service=\"$service\",code=~\"5..\"}[1m])) / sum(rate(http_requests_total{service=\"$service\"}[1m]))\n": `impact.yml:3: signals[1].query: has no data: the store holds no series of http_requests_total{code=~"5.."}`,
		"signals:\n  - {name: e, query: 'sum(rate(a_total[1m])) or sum(rate(b_total[1m]))'}\n":                                              "the store holds no series of a_total nor b_total",
		"traffic: {query: 'sum(rate(requests_total{app=\"$service\"}[1m]))'}\n":                                                             "impact.yml:1: traffic.query: has no data: the store holds no series of requests_total",
		"services:\n  web:\n    signals:\n      - {name: p99, query: 'histogram_quantile(0.99, sum by (le) (rate(latency_bucket[1m])))'}\n": "impact.yml:4: services.web.signals[0].query: has no data: the store holds no series of latency_bucket",
		"signals:\n  - {name: e, query: 'sum(rate(http_requests_total{job=\"apii\"}[1m]))'}\n":                                              `no series of http_requests_total{job="apii"}`,
	} {
		err := parse(body).CheckData(ctx, db, tenants(), p)
		var nd *NoDataError
		require.True(t, errors.As(err, &nd), "%s: %v", body, err)
		require.ErrorContains(t, err, want, body)
	}

	for _, body := range []string{
		// The matchers on the change's attributes are left out.
		"signals:\n  - {name: e, query: 'sum(rate(http_requests_total{service=\"$service\"}[1m]))'}\n",
		"attributes: [track]\nsignals:\n  - {name: e, query: 'sum(rate(http_requests_total{service=~\"(.+/)?$service\",track=\"${track}\"}[1m]))'}\n",
		// A series that may be missing behind an "or".
		"signals:\n  - name: e\n    query: (sum(rate(http_requests_total{service=\"$service\",code=~\"5..\"}[1m])) or vector(0)) / sum(rate(http_requests_total{service=\"$service\"}[1m]))\n",
		"signals:\n  - {name: e, query: 'sum(rate(nothing_total[1m])) or sum(rate(http_requests_total[1m]))'}\n",
		"signals:\n  - {name: e, query: 'sum(rate(http_requests_total[1m])) unless sum(rate(nothing_total[1m]))'}\n",
		"signals:\n  - {name: e, query: 'absent(nothing_total)'}\n",
		"signals:\n  - {name: e, query: 'histogram_quantile(0.99, sum by (le) (rate(lat_bucket{service=\"$service\"}[1m])))'}\n",
		// In another tenant.
		"signals:\n  - {name: e, query: 'sum(rate(jobs_total[1m]))'}\n",
		// Only the defaults' templates: not written in the file.
		"traffic: {min_requests: 10}\nevents: {names: [deploy]}\n",
	} {
		require.NoError(t, parse(body).CheckData(ctx, db, tenants(), p), body)
	}
}

// TestLoadRefusesSignalsWithoutData: at start-up and on reload (the tick's
// and Reload's, as SIGHUP and POST /-/reload call it), a file with a signal
// without data is refused with its file and line, and on reload the
// configuration in force stays; on an empty store the file is taken.
func TestLoadRefusesSignalsWithoutData(t *testing.T) {
	db := storagetest.Open(t, t.TempDir())
	path := filepath.Join(t.TempDir(), "impact.yml")
	noData := "events: {names: [rollout]}\nsignals:\n  - {name: e, query: 'sum(rate(htp_requests_total[1m]))'}\n"
	require.NoError(t, os.WriteFile(path, []byte(noData), 0o600))
	deps := Deps{Parser: levpromql.NewParser(), Series: db, Tenants: db}

	// A fresh start: the store is empty, the file is taken as it is.
	s, err := New(deps, Options{ConfigFile: path})
	require.NoError(t, err)
	require.Equal(t, []string{"rollout"}, s.Config().Events)

	appendIn(t, db, tenant.Default, labels.FromStrings("__name__", "http_requests_total", "service", "web", "code", "200"))
	_, err = New(deps, Options{ConfigFile: path})
	require.ErrorContains(t, err, path+":3: signals[0].query: has no data: the store holds no series of htp_requests_total")

	good := "events: {names: [deploy]}\nsignals:\n  - {name: e, query: 'sum(rate(http_requests_total[1m]))'}\n"
	require.NoError(t, os.WriteFile(path, []byte(good), 0o600))
	s, err = New(deps, Options{ConfigFile: path})
	require.NoError(t, err)
	require.Equal(t, []string{"deploy"}, s.Config().Events)

	require.NoError(t, os.WriteFile(path, []byte(noData), 0o600))
	bump(t, path)
	err = s.Reload()
	require.ErrorContains(t, err, path+":3: signals[0].query: has no data")
	require.ErrorContains(t, err, "the one in force stays")
	require.Equal(t, []string{"deploy"}, s.Config().Events)
	s.maybeReload() // the tick does not take it either
	require.Equal(t, []string{"deploy"}, s.Config().Events)
	bump(t, path)
	s.maybeReload()
	require.Equal(t, []string{"deploy"}, s.Config().Events)

	require.NoError(t, os.WriteFile(path, []byte(good+"thresholds: {pass: 90, marginal: 70}\n"), 0o600))
	require.NoError(t, s.Reload())
	require.Equal(t, 90.0, s.Config().Pass)
}
