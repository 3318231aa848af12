package promql

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
)

// FuzzEventFunctions parses and evaluates queries built around the
// event-window functions, instant and range, over a real store with
// samples, histograms and windows. Errors are fine; a panic, or a runtime
// error the engine recovered from ("unexpected error"), is not.
func FuzzEventFunctions(f *testing.F) {
	for _, seed := range []string{
		`increase_since(c[1h], change_event_active{event_name="deploy"})`,
		`rate_since(c[10m] offset 5m, change_event_window_start_seconds)`,
		`quantile_since(0.5, g[1h], (change_event_active))`,
		`quantile_since(NaN, g[1h], change_event_window_end_seconds{service="checkout"})`,
		`sum_since(h[1h], change_event_active)`,
		`avg_since(h[30m:1m], change_event_active{event_name="deploy"})`,
		`min_since(increase_since(c[5m], change_event_active)[1h:1m], change_event_active)`,
		`max_since(g[1h] offset -10m, change_event_active)`,
		`count_since({__name__=~"c|g|h"}[1h], change_event_active)`,
		`after_before_ratio(rate(c[1h]), change_event_active{event_name="deploy"}, 10m)`,
		`after_before_difference(quantile_over_time(0.99, g[1h]), change_event_active)`,
		`after_before_ratio(stddev_over_time(h[2h:30s]), change_event_active, -1)`,
		`after_before_difference(count_over_time(c[1h]), change_event_active, 1e300)`,
		`after_before_ratio((increase(c[1h])), change_event_active, time())`,
		`time_since_window_start(change_event_active{event_name="deploy"})`,
		`time_since_window_end(change_event_active) * on() group_left time_since_window_start(change_event_active)`,
		`max_over_time(time_since_window_start(change_event_active)[1h:5m])`,
		`increase_since(c[1h] @ 100, change_event_active)`,
		`sum by (service) (rate_since(c[1h], change_event_active)) / ignoring(x) sum(c)`,
		`increase_since(c[1h], change_event_active) and time_since_window_end(change_event_active) > 0`,
	} {
		f.Add(seed, int64(30), int64(60), int64(5))
	}
	env := newScriptEnv(f)
	datadriven.RunTestFromStringAny(f, `load 15s
c{service="checkout", code="500"} 0+1x240 0+1x240
g{service="cart"} 1 _ 3 NaN Inf -Inf 5 stale 7+1x400
h{service="checkout"} {{schema:0 sum:5 count:4 buckets:[1 2 1]}}x300
----

event
start deploy 10m service=checkout
stop deploy 20m service=checkout
start deploy 20m service=checkout
start canary 5m
start deploy 70m service=cart version=2
stop deploy 70m service=cart version=2
----
`, func(t testing.TB, d *datadriven.TestData) string {
		if d.Cmd == "load" {
			return env.load(t, d)
		}
		return env.event(t, d)
	})
	f.Fuzz(func(t *testing.T, query string, startMin, endMin, stepSec int64) {
		ctx := context.Background()
		start := env.base.Add(time.Duration(startMin%200) * time.Minute)
		end := start.Add(time.Duration(max(0, endMin%200)) * time.Minute)
		step := time.Duration(max(1, stepSec%600)) * time.Second
		check := func(err error) {
			if err != nil && strings.Contains(err.Error(), "unexpected error") {
				t.Fatalf("%q: %v", query, err)
			}
		}
		// Behind NarrowingQuerier and without it: the same result. Huge
		// subqueries are cut short by a deadline.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		run := func(q promstorage.Queryable, instant bool) string {
			var (
				qry promql.Query
				err error
			)
			if instant {
				qry, err = env.engine.NewInstantQuery(ctx, q, nil, query, start)
			} else {
				qry, err = env.engine.NewRangeQuery(ctx, q, nil, query, start, end, step)
			}
			if err != nil {
				return "parse error"
			}
			defer qry.Close()
			res := qry.Exec(ctx)
			check(res.Err)
			if res.Err != nil {
				if ctx.Err() != nil {
					return "timeout"
				}
				return "error" // messages may name series in any order
			}
			// Series come in no set order (e.g. out of a subquery).
			switch v := res.Value.(type) {
			case promql.Vector:
				sort.Slice(v, func(i, j int) bool { return labels.Compare(v[i].Metric, v[j].Metric) < 0 })
			case promql.Matrix:
				sort.Slice(v, func(i, j int) bool { return labels.Compare(v[i].Metric, v[j].Metric) < 0 })
			}
			return res.Value.String()
		}
		for _, instant := range []bool{true, false} {
			if a, b := run(env.queryable(), instant), run(env.plainQueryable(), instant); a != b && a != "timeout" && b != "timeout" {
				t.Fatalf("%q (instant %v): narrowing changed the result:\n%s\nwithout:\n%s", query, instant, a, b)
			}
		}
	})
}
