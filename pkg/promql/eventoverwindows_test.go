package promql

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/tenant"
)

// TestOverWindowsLabels: each result of over_windows has the series'
// labels (without __name__), the window's event_name and attributes, and
// window_start, the window's start in Unix seconds.
func TestOverWindowsLabels(t *testing.T) {
	env := newScriptEnv(t)
	ctx := context.Background()
	app := env.db.Appender(ctx)
	ls := labels.FromStrings("__name__", "req", "service", "checkout", "code", "500")
	for i := range 241 {
		_, err := app.Append(0, ls, env.base.Add(time.Duration(i)*15*time.Second).UnixMilli(), float64(i))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	tid, err := env.db.TenantID(ctx, tenant.Default)
	require.NoError(t, err)
	start := env.base.Add(10*time.Minute + 500*time.Millisecond)
	_, err = env.events.Append(ctx, tid, []events.Event{
		{Name: "canary-step", State: events.StateStart, Time: start, Attributes: map[string]string{"service": "checkout", "weight": "20"}},
		{Name: "canary-step", State: events.StateStop, Time: env.base.Add(20 * time.Minute), Attributes: map[string]string{"service": "checkout", "weight": "20"}},
	})
	require.NoError(t, err)

	q, err := env.engine.NewInstantQuery(ctx, env.queryable(), nil, `over_windows(count_over_time(req[1h]), change_event_active{event_name="canary-step"})`, env.base.Add(30*time.Minute))
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(ctx)
	require.NoError(t, res.Err)
	v := res.Value.(promql.Vector)
	require.Len(t, v, 1)
	require.Equal(t, labels.FromStrings("code", "500", "event_name", "canary-step", "service", "checkout", "weight", "20",
		"window_start", strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', -1, 64)), v[0].Metric)
	require.Equal(t, 39.0, v[0].F, "samples 10m15s..19m45s")
}

// TestOverWindowsMaxSamples: the samples over_windows reads count against
// the engine's MaxSamples (--query.max-samples).
func TestOverWindowsMaxSamples(t *testing.T) {
	env := newScriptEnv(t)
	ctx := context.Background()
	app := env.db.Appender(ctx)
	for i := range 241 {
		_, err := app.Append(0, labels.FromStrings("__name__", "req", "service", "checkout"), env.base.Add(time.Duration(i)*15*time.Second).UnixMilli(), float64(i))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	opts := DefaultOptions()
	opts.Registerer = prometheus.NewRegistry()
	opts.MaxSamples = 100
	ng, err := New(opts)
	require.NoError(t, err)
	defer ng.Close()
	q, err := ng.NewInstantQuery(ctx, env.queryable(), nil, `over_windows(increase(req[1h]), change_event_active{event_name="canary-step"})`, env.base.Add(time.Hour))
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(ctx)
	var tooMany promql.ErrTooManySamples
	require.ErrorAs(t, res.Err, &tooMany)
}

// TestConsoleKnowsEventFunctions: web/functions.json, from which the
// console's grammar and autocomplete are generated, lists every
// event-window function.
func TestConsoleKnowsEventFunctions(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "web", "functions.json"))
	require.NoError(t, err)
	var fns []struct{ Name string }
	require.NoError(t, json.Unmarshal(b, &fns))
	var names []string
	for _, f := range fns {
		names = append(names, f.Name)
	}
	require.ElementsMatch(t, EventFunctions(), names)
}
