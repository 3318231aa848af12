package impact

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
)

func TestDefaultConfigParses(t *testing.T) {
	c := DefaultConfig()
	p := levpromql.NewParser()
	for _, s := range c.Signals {
		q, err := expand(s.Query, map[string]string{"service": `we"b`})
		require.NoError(t, err)
		_, err = p.ParseExpr(q)
		require.NoError(t, err, s.Name)
	}
	// A file with nothing in it is the defaults.
	got, err := ParseConfig("empty.yml", nil, p)
	require.NoError(t, err)
	require.Equal(t, c, got)
}

func TestExpand(t *testing.T) {
	q, err := expand(`x{a="$service",b="${version}",c=~"v$$"}`, map[string]string{"service": `a"b\c`, "version": "1"})
	require.NoError(t, err)
	require.Equal(t, `x{a="a\"b\\c",b="1",c=~"v$"}`, q)
	_, err = expand(`x{a="$stage"}`, map[string]string{})
	require.EqualError(t, err, "the change has no attribute stage")
}

func TestParseConfig(t *testing.T) {
	p := levpromql.NewParser()
	c, err := ParseConfig("impact.yml", []byte(`
events:
  names: [deploy]
  service_attributes: [app]
  delay: 2m
  point_window: 5m
  grace: 10m
attributes: [stage]
thresholds: {pass: 90, marginal: 50}
traffic: {min_requests: 50}
signals:
  - name: errors
    query: sum(rate(errors_total{app="$service",stage="$stage"}[1m]))
    critical: true
    min_samples: 3
    allowed_increase: 1.5
split: {label: version, baseline: stable, canary: canary}
services:
  checkout:
    signals:
      - {name: p99, query: 'histogram_quantile(0.99, sum by (le) (rate(lat_bucket{app="$service"}[1m])))', direction: either}
`), p)
	require.NoError(t, err)
	require.Equal(t, []string{"deploy"}, c.Events)
	require.Equal(t, []string{"app"}, c.ServiceAttributes)
	require.Equal(t, 10*time.Minute, c.Grace)
	require.Equal(t, 90.0, c.Pass)
	require.Equal(t, 50.0, c.Traffic.MinRequests)
	require.Equal(t, DefaultConfig().Traffic.Query, c.Traffic.Query)
	require.Equal(t, []Signal{{Name: "errors", Query: `sum(rate(errors_total{app="$service",stage="$stage"}[1m]))`, Direction: "increase", Critical: true, MinSamples: 3, AllowedIncrease: 1.5}}, c.Signals)
	sigs, split := c.For("checkout")
	require.Equal(t, "p99", sigs[0].Name)
	require.Equal(t, "either", sigs[0].Direction)
	require.Equal(t, &Split{Label: "version", Baseline: "stable", Canary: "canary"}, split)
	svc, attr := c.ServiceOf(map[string]string{"app": "checkout", "service": "x"})
	require.Equal(t, "checkout", svc)
	require.Equal(t, "app", attr)
}

// TestParseConfigErrors: every bad file is refused with the file, the line
// and the field.
func TestParseConfigErrors(t *testing.T) {
	p := levpromql.NewParser()
	for body, want := range map[string]string{
		"signals:\n  - name: e\n    query: sum(rate(x[1m]\n":                "impact.yml:2: signals[0].query: PromQL does not parse: ",
		"signals:\n  - name: e\n    query: x{stage=\"$stage\"}\n":           "impact.yml:2: signals[0].query: uses $stage, which is not an attribute the configuration declares",
		"signals:\n  - name: e\n    query: x\n    direction: up\n":          `impact.yml:2: signals[0].direction: "up" is not increase, decrease or either`,
		"signals:\n  - name: e\n    query: x\n    colour: red\n":            "impact.yml:4: unknown field colour",
		"signals:\n  - query: x\n":                                          "impact.yml:2: signals[0].name: is required",
		"signals:\n  - {name: a, query: x}\n  - {name: a, query: y}\n":      `impact.yml:3: signals[1].name: "a" is used by another signal`,
		"signals:\n  - {name: a, query: x, min_samples: 0}\n":               "impact.yml:2: signals[0].min_samples: 0 is below 1",
		"split: {label: track, baseline: a, canary: a}\n":                   `impact.yml:1: split.canary: is the baseline's value "a"`,
		"split: {label: 1x, baseline: a, canary: b}\n":                      `impact.yml:1: split.label: "1x" is not a label name`,
		"traffic: {query: 'x{'}\n":                                          "impact.yml:1: traffic.query: PromQL does not parse",
		"signals: [{name: a, query: x, critical_decrease: -1}]\n":           "impact.yml:1: signals[0].critical_decrease: -1 is not a ratio above 0",
		"traffic: {min_requests: -1}\n":                                     "impact.yml:1: traffic.min_requests: -1 is below 0",
		"thresholds: {pass: 50, marginal: 80}\n":                            "impact.yml: thresholds: want 0 <= marginal <= pass <= 100, got pass 50, marginal 80",
		"events:\n  nmes: [deploy]\n":                                       "impact.yml:2: unknown field nmes",
		"events: {delay: 2m, grace: 1m}\n":                                  "impact.yml: events.grace: 1m0s is not longer than events.delay (2m0s)",
		"services:\n  web:\n    signals:\n      - {name: a, query: 'x{'}\n": "impact.yml:4: services.web.signals[0].query: PromQL does not parse",
	} {
		_, err := ParseConfig("impact.yml", []byte(body), p)
		require.Error(t, err, body)
		require.Contains(t, err.Error(), want, body)
	}
}

// TestReloadKeepsTheConfigInForce: a bad file on reload is refused and the
// configuration read before stays.
func TestReloadKeepsTheConfigInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "impact.yml")
	require.NoError(t, os.WriteFile(path, []byte("events: {names: [deploy]}\n"), 0o600))
	s, err := New(Deps{Parser: levpromql.NewParser()}, Options{ConfigFile: path})
	require.NoError(t, err)
	require.Equal(t, []string{"deploy"}, s.Config().Events)

	require.NoError(t, os.WriteFile(path, []byte("events: {names: [rollout]}\nsignals: [{name: a, query: 'x{'}]\n"), 0o600))
	bump(t, path)
	s.maybeReload()
	require.Equal(t, []string{"deploy"}, s.Config().Events)

	require.NoError(t, os.WriteFile(path, []byte("events: {names: [rollout]}\n"), 0o600))
	bump(t, path)
	s.maybeReload()
	require.Equal(t, []string{"rollout"}, s.Config().Events)

	_, err = New(Deps{Parser: levpromql.NewParser()}, Options{ConfigFile: filepath.Join(t.TempDir(), "missing.yml")})
	require.ErrorContains(t, err, "impact config: stat ")
}

// bump moves the file's modification time forward, so a reload sees a
// change even within the file system's time resolution.
func bump(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	next := fi.ModTime().Add(1e9)
	require.NoError(t, os.Chtimes(path, next, next))
}
