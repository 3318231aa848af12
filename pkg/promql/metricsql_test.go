package promql

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestExpandWithTemplates(t *testing.T) {
	for in, want := range map[string]string{
		// The example.
		`WITH (errs = rate(http_requests_total{code=~"5.."}[5m]), all = rate(http_requests_total[5m])) sum(errs) by (service) / sum(all) by (service)`: `sum(rate(http_requests_total{code=~"5.."}[5m])) by(service) / sum(rate(http_requests_total[5m])) by(service)`,
		// Event-window functions (unknown to MetricsQL) pass through.
		`with (w = change_event_active{event_name="deploy", service="checkout"}) increase_since(c[2h], w) / rate_since (c[2h], w)`: `increase_since(c[2h], change_event_active{event_name="deploy",service="checkout"}) / rate_since(c[2h], change_event_active{event_name="deploy",service="checkout"})`,
		`WITH (p = quantile_over_time(0.99, lat[1h])) after_before_ratio(p, change_event_active, 10m)`:                             `after_before_ratio(quantile_over_time(0.99, lat[1h]), change_event_active, 10m)`,
		`WITH (x = 1) time_since_window_start(change_event_active{text="increase_since(a, b)"}) > x`:                               `time_since_window_start(change_event_active{text="increase_since(a, b)"}) > 1`,
		// Templates with arguments.
		`WITH (ratio(a, b) = a / b) ratio(sum(x), sum(y))`: `sum(x) / sum(y)`,
		// Not a WITH query: unchanged, even if MetricsQL could not parse it.
		`sum(increase_since(c[1h], change_event_active))`: `sum(increase_since(c[1h], change_event_active))`,
		`withdrawals_total`: `withdrawals_total`,
	} {
		got, err := ExpandWithTemplates(in, QueryLimits{})
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
		_, err = NewParser().ParseExpr(got)
		require.NoError(t, err, got)
	}

	_, err := ExpandWithTemplates(`WITH (x = ) x`, QueryLimits{})
	require.ErrorContains(t, err, "expand WITH templates")
	_, err = ExpandWithTemplates(`WITH (x = foo_bar(y)) x`, QueryLimits{})
	require.ErrorContains(t, err, `unsupported function "foo_bar"`)
}

// TestWithTemplatesThroughEngine runs expanded queries on the engine over the
// real store: the result equals the query written out, and a MetricsQL-only
// function is rejected by name.
func TestWithTemplatesThroughEngine(t *testing.T) {
	env := newScriptEnv(t)
	app := env.db.Appender(context.Background())
	p := NewParser()
	for _, s := range []string{`http_requests_total{service="a", code="500"}`, `http_requests_total{service="a", code="200"}`} {
		lset, err := p.ParseMetric(s)
		require.NoError(t, err)
		for i := range 41 {
			v := float64(i)
			if lset.Get("code") == "200" {
				v *= 3
			}
			_, err := app.Append(0, lset, env.base.Add(time.Duration(i)*15*time.Second).UnixMilli(), v)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	at := env.base.Add(40 * 15 * time.Second)
	run := func(q string) string {
		expanded, err := ExpandWithTemplates(q, QueryLimits{})
		require.NoError(t, err)
		qry, err := env.engine.NewInstantQuery(context.Background(), env.queryable(), nil, expanded, at)
		if err != nil {
			return "error: " + err.Error()
		}
		defer qry.Close()
		res := qry.Exec(context.Background())
		if res.Err != nil {
			return "error: " + res.Err.Error()
		}
		return res.Value.String()
	}
	got := run(`WITH (errs = rate(http_requests_total{code=~"5.."}[5m]), all = rate(http_requests_total[5m])) sum(errs) by (service) / sum(all) by (service)`)
	require.Equal(t, run(`sum(rate(http_requests_total{code=~"5.."}[5m])) by (service) / sum(rate(http_requests_total[5m])) by (service)`), got)
	require.Contains(t, got, `{service="a"} => 0.25`)
	_, err := ExpandWithTemplates(`WITH (x = http_requests_total) range_median(x)`, QueryLimits{})
	require.ErrorContains(t, err, `function "range_median" is MetricsQL-only`)
	// Should one slip through, the engine names it too.
	require.Contains(t, run(`WITH (x = http_requests_total) x + 1`), `=> 41`)
}
