package promql

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

// scriptEnv is a real store (storagetest) with a real event store over the
// same Pebble database, merged as the server merges them, and the engine
// New builds. Script times are durations after base.
type scriptEnv struct {
	db     *storage.DB
	events *eventstore.Store
	engine *promql.Engine
	base   time.Time
}

// scriptBase is an hour-aligned time a day ago, so that samples and events
// are inside the retention and steps fall on the same grid in every run.
func scriptBase() time.Time {
	return time.Now().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
}

func newScriptEnv(t testing.TB) *scriptEnv {
	db := storagetest.New(t)
	base := scriptBase()
	es := eventstore.New(storagetest.Namespace(t, db, storage.OwnerEvents), eventstore.Options{Now: func() time.Time { return base.Add(24 * time.Hour) }})
	opts := DefaultOptions()
	opts.Registerer = prometheus.NewRegistry()
	ng, err := New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ng.Close()) })
	return &scriptEnv{db: db, events: es, engine: ng, base: base}
}

// queryable merges the store and the event store as the server does,
// behind NarrowingQuerier.
func (e *scriptEnv) queryable() promstorage.Queryable {
	return NewQueryable(e.db, e.events.Queryable(e.db))
}

// plainQueryable is queryable without NarrowingQuerier.
func (e *scriptEnv) plainQueryable() promstorage.Queryable {
	return promstorage.QueryableFunc(func(mint, maxt int64) (promstorage.Querier, error) {
		tq, err := e.db.Querier(mint, maxt)
		if err != nil {
			return nil, err
		}
		eq := e.events.ContextQuerier(e.db, mint, maxt)
		return promstorage.NewMergeQuerier([]promstorage.Querier{tq, eq}, nil, promstorage.ChainedSeriesMerge), nil
	})
}

// TestEventFunctionScripts runs testdata/*.txt: datadriven scripts whose
// expected outputs were written by hand from docs/promql-event-functions.md.
//
//	load <interval>            series in promqltest's notation, one per line
//	event                      one event per line:
//	                           start|stop <name> <time> [attr=value ...]
//	eval at=<time>             an instant query; output: "{labels} value" per series
//	eval start=<t> end=<t> step=<d>
//	                           a range query; output: "{labels} v v v ..." with _ where absent
//
// Times are durations after the script's base time. "error: ..." is the
// query's error.
func TestEventFunctionScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		if !strings.HasSuffix(path, ".txt") {
			return
		}
		env := newScriptEnv(t)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "load":
				return env.load(t, d)
			case "event":
				return env.event(t, d)
			case "eval":
				return env.eval(t, d)
			}
			t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
			return ""
		})
	})
}

func (e *scriptEnv) at(t testing.TB, s string) time.Time {
	t.Helper()
	d, err := model.ParseDuration(s)
	if err != nil && strings.HasPrefix(s, "-") {
		d, err = model.ParseDuration(s[1:])
		d = -d
	}
	require.NoError(t, err, "time %q", s)
	return e.base.Add(time.Duration(d))
}

func (e *scriptEnv) load(t testing.TB, d *datadriven.TestData) string {
	require.Len(t, d.CmdArgs, 1, "load <interval>")
	step, err := model.ParseDuration(d.CmdArgs[0].Key)
	require.NoError(t, err)
	app := e.db.Appender(context.Background())
	p := NewParser()
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lset, vals, err := p.ParseSeriesDesc(line)
		require.NoError(t, err, line)
		for i, v := range vals {
			if v.Omitted {
				continue
			}
			ts := e.base.Add(time.Duration(i) * time.Duration(step)).UnixMilli()
			if v.Histogram != nil {
				_, err = app.AppendHistogram(0, lset, ts, nil, v.Histogram)
			} else {
				_, err = app.Append(0, lset, ts, v.Value)
			}
			require.NoError(t, err, line)
		}
	}
	require.NoError(t, app.Commit())
	return ""
}

func (e *scriptEnv) event(t testing.TB, d *datadriven.TestData) string {
	ctx := context.Background()
	id, err := e.db.TenantID(ctx, tenant.Default)
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		require.GreaterOrEqual(t, len(f), 3, "start|stop <name> <time> [attr=value ...]: %q", line)
		st, err := events.ParseState(f[0])
		require.NoError(t, err)
		ev := events.Event{Name: f[1], State: st, Time: e.at(t, f[2]), Attributes: map[string]string{}}
		for _, kv := range f[3:] {
			k, v, ok := strings.Cut(kv, "=")
			require.True(t, ok, kv)
			ev.Attributes[k] = v
		}
		_, err = e.events.Append(ctx, id, []events.Event{ev})
		require.NoError(t, err, line)
	}
	return ""
}

func (e *scriptEnv) eval(t *testing.T, d *datadriven.TestData) string {
	ctx := context.Background()
	expr := strings.TrimSpace(d.Input)
	var (
		q     promql.Query
		err   error
		steps []time.Time
	)
	if d.HasArg("at") {
		var at string
		d.ScanArgs(t, "at", &at)
		ts := e.at(t, at)
		steps = []time.Time{ts}
		q, err = e.engine.NewInstantQuery(ctx, e.queryable(), nil, expr, ts)
	} else {
		var start, end, step string
		d.ScanArgs(t, "start", &start)
		d.ScanArgs(t, "end", &end)
		d.ScanArgs(t, "step", &step)
		s, en := e.at(t, start), e.at(t, end)
		st, perr := model.ParseDuration(step)
		require.NoError(t, perr)
		for ts := s; !ts.After(en); ts = ts.Add(time.Duration(st)) {
			steps = append(steps, ts)
		}
		q, err = e.engine.NewRangeQuery(ctx, e.queryable(), nil, expr, s, en, time.Duration(st))
	}
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return "error: " + res.Err.Error() + "\n"
	}
	return formatResult(t, res.Value, steps)
}

func formatResult(t *testing.T, v parser.Value, steps []time.Time) string {
	var m promql.Matrix
	switch v := v.(type) {
	case promql.Vector:
		for _, s := range v {
			m = append(m, promql.Series{Metric: s.Metric, Floats: []promql.FPoint{{T: s.T, F: s.F}}})
		}
	case promql.Matrix:
		m = v
	case promql.Scalar:
		return formatFloat(v.V) + "\n"
	default:
		t.Fatalf("unexpected result type %T", v)
	}
	sort.Slice(m, func(i, j int) bool { return labels.Compare(m[i].Metric, m[j].Metric) < 0 })
	var b strings.Builder
	for _, s := range m {
		b.WriteString(s.Metric.String())
		byT := map[int64]string{}
		for _, p := range s.Floats {
			byT[p.T] = formatFloat(p.F)
		}
		for _, p := range s.Histograms {
			byT[p.T] = p.H.String()
		}
		for _, ts := range steps {
			v, ok := byT[ts.UnixMilli()]
			if !ok {
				v = "_"
			}
			b.WriteString(" " + v)
		}
		b.WriteString("\n")
	}
	if b.Len() == 0 {
		return "(empty)\n"
	}
	return b.String()
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', 10, 64)
}

// TestEventFunctionsRegistered checks that every event-window function is
// known to Prometheus' parser and engine, and is time dependent.
func TestEventFunctionsRegistered(t *testing.T) {
	names := EventFunctions()
	require.Len(t, names, 13)
	for _, n := range names {
		require.Contains(t, parser.Functions, n)
		require.NotNil(t, promql.FunctionCalls[n], n)
		require.Contains(t, promql.AtModifierUnsafeFunctions, n)
		_, err := NewParser().ParseExpr(exampleCall(n))
		require.NoError(t, err, n)
	}
	// The internal names cannot be written in a query.
	require.NotContains(t, parser.Functions, windowListFunc)
	_, err := NewParser().ParseExpr(windowListFunc + `(change_event_active)`)
	require.Error(t, err)
	require.Equal(t, eventstore.WindowListHint, windowListFunc)
	require.NotContains(t, parser.Functions, windowSamplesFunc)
	// Each test script exists.
	for _, n := range names {
		_, err := os.Stat(filepath.Join("testdata", n+".txt"))
		require.NoError(t, err, "a script per function")
	}
}

func exampleCall(name string) string {
	w := `change_event_active{event_name="deploy"}`
	switch {
	case name == "quantile_since":
		return `quantile_since(0.9, m[1h], ` + w + `)`
	case strings.HasSuffix(name, "_since"):
		return name + `(m[1h], ` + w + `)`
	case strings.HasPrefix(name, "after_before"):
		return name + `(rate(m[1h]), ` + w + `, 10m)`
	case name == "over_windows":
		return name + `(increase(m[1d]), ` + w + `)`
	default:
		return name + `(` + w + `)`
	}
}

// TestWindowArgumentErrors checks the errors of badly written window and
// range arguments: 400-class parse errors naming the function and the rule.
func TestWindowArgumentErrors(t *testing.T) {
	env := newScriptEnv(t)
	for q, want := range map[string]string{
		`increase_since(m[1h], up)`:                                                   `increase_since: the window argument must select one of change_event_active`,
		`increase_since(m[1h], change_event_active offset 5m)`:                        `cannot have an offset or @ modifier`,
		`increase_since(m[1h], sum(change_event_active))`:                             `the window argument must be a selector`,
		`increase_since(m[1h] @ 100, change_event_active)`:                            `the @ modifier is not supported`,
		`after_before_ratio(m, change_event_active)`:                                  `after_before_ratio: the first argument must be a range function`,
		`after_before_ratio(rate(m[1h]) * 2, change_event_active)`:                    `the first argument must be a range function`,
		`after_before_difference(deriv(m[1h]), change_event_active)`:                  `the first argument must be a range function`,
		`time_since_window_start(last9_change_events)`:                                `time_since_window_start: the window argument must select`,
		`time_since_window_end({event_name="deploy"})`:                                `the window argument must select one of`,
		`time_since_window_end({__name__=~"change_event_active", event_name="x"})`:    `the window argument must select one of`,
		`sum(rate_since(m[1h], change_event_window_start_seconds[5m]))`:               `expected type instant vector in call to function "rate_since", got range vector; the window argument of rate_since selects windows as an instant vector`,
		`after_before_ratio(m[5m], change_event_active)`:                              `got range vector; the first argument of after_before_ratio is a range function over the metric, such as rate(m[5m])`,
		`increase_since(m, change_event_active)`:                                      `got instant vector; the metric argument of increase_since is a range vector, such as http_requests_total[5m]: add the [range]`,
		`quantile_since(0.5, m[1h], change_event_active @ end())`:                     `cannot have an offset or @ modifier`,
		`increase_since(m[1h] anchored, change_event_window_end_seconds)`:             `anchored modifier can only be used with`,
		`after_before_ratio(quantile_over_time(0.5, m[1h] @ 0), change_event_active)`: `the @ modifier is not supported`,
	} {
		q, err := env.engine.NewInstantQuery(context.Background(), env.queryable(), nil, q, env.base)
		if err == nil {
			err = q.Exec(context.Background()).Err
			q.Close()
		}
		require.ErrorContains(t, err, want, q)
	}
}

// TestBuiltinPromQLTestsOnStore runs Prometheus' own PromQL test files
// through the engine New builds, over levitated's store: registering the
// event-window functions changes nothing else.
func TestBuiltinPromQLTestsOnStore(t *testing.T) {
	opts := DefaultOptions()
	opts.Timeout = 100 * time.Second
	opts.UseStartTimestamps = true
	opts.Registerer = prometheus.NewRegistry()
	ng := newEngine(t, opts)
	promqltest.RunBuiltinTestsWithStorage(t, ng, func(tb testing.TB) promstorage.Storage { return storagetest.New(tb) })
}

// TestPlainParserKeepsQuery checks that the API's parser (format_query,
// parse_query) shows event-window calls as written.
func TestPlainParserKeepsQuery(t *testing.T) {
	for _, q := range []string{
		`after_before_ratio(quantile_over_time(0.99, latency_seconds[1h]), change_event_active{event_name="deploy"}, 600)`,
		`increase_since(http_requests_total{code=~"5.."}[2h], change_event_active{event_name="canary-step",service="checkout"})`,
	} {
		e, err := NewParser().ParseExpr(q)
		require.NoError(t, err)
		require.Equal(t, q, e.String())
		e, err = evalParser{Parser: NewParser()}.ParseExpr(q)
		require.NoError(t, err)
		require.True(t, slices.ContainsFunc(strings.Split(e.String(), "("), func(s string) bool { return strings.HasSuffix(s, windowListFunc) }), e.String())
	}
}

// TestEventFunctionsReadOnlyWhatWindowsNeed checks, with the engine's own
// sample statistics, that increase_since over a 2h range whose window
// started 20 minutes ago reads the samples of those 20 minutes, as
// increase(c[20m]) does, not the 2 hours written.
func TestEventFunctionsReadOnlyWhatWindowsNeed(t *testing.T) {
	env := newScriptEnv(t)
	datadriven.RunTestFromString(t, `load 15s
c{service="checkout"} 0+1x480
----

event
start deploy 100m service=checkout
----
`, func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd == "load" {
			return env.load(t, d)
		}
		return env.event(t, d)
	})
	samples := func(q string) int64 {
		ctx := context.Background()
		qry, err := env.engine.NewInstantQuery(ctx, env.queryable(), promql.NewPrometheusQueryOpts(false, 0, nil), q, env.base.Add(120*time.Minute))
		require.NoError(t, err)
		defer qry.Close()
		res := qry.Exec(ctx)
		require.NoError(t, res.Err)
		require.Len(t, res.Value.(promql.Vector), 1, q)
		return qry.Stats().Samples.TotalSamples
	}
	event := samples(`increase_since(c[2h], change_event_active{event_name="deploy"})`)
	require.Equal(t, samples(`increase(c[20m])`)+1, event, "the sample at the window's start is counted too")
	require.Less(t, event, samples(`increase(c[2h])`)/4)
}

// recordingQuerier records the start of every select of the series named c.
type recordingQuerier struct {
	promstorage.Querier
	starts *[]int64
}

func (q recordingQuerier) Select(ctx context.Context, sortSeries bool, hints *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.SeriesSet {
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Value == "c" && hints != nil {
			*q.starts = append(*q.starts, hints.Start)
		}
	}
	return q.Querier.Select(ctx, sortSeries, hints, ms...)
}

// TestNarrowingQuerierSelectsFromWindowStart checks that, behind
// NarrowingQuerier, the range argument of increase_since is selected from
// the window's start, not from the start of the written range; and that
// without it the results are the same.
func TestNarrowingQuerierSelectsFromWindowStart(t *testing.T) {
	env := newScriptEnv(t)
	datadriven.RunTestFromString(t, "load 15s\nc{service=\"checkout\"} 0+1x480\n----\n\nevent\nstart deploy 100m service=checkout\n----\n",
		func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd == "load" {
				return env.load(t, d)
			}
			return env.event(t, d)
		})
	at := env.base.Add(120 * time.Minute)
	run := func(narrowing bool) (string, []int64) {
		var starts []int64
		q := promstorage.QueryableFunc(func(mint, maxt int64) (promstorage.Querier, error) {
			inner, err := env.queryable().Querier(mint, maxt)
			if err != nil {
				return nil, err
			}
			_ = inner.Close()
			inner, err = env.plainQueryable().Querier(mint, maxt)
			if err != nil {
				return nil, err
			}
			rq := recordingQuerier{Querier: inner, starts: &starts}
			if narrowing {
				return NarrowingQuerier(rq), nil
			}
			return rq, nil
		})
		ctx := context.Background()
		qry, err := env.engine.NewRangeQuery(ctx, q, nil, `increase_since(c[2h], change_event_active{event_name="deploy"})`, at.Add(-10*time.Minute), at, time.Minute)
		require.NoError(t, err)
		defer qry.Close()
		res := qry.Exec(ctx)
		require.NoError(t, res.Err)
		return res.Value.String(), starts
	}
	narrowed, starts := run(true)
	require.Equal(t, []int64{env.base.Add(100 * time.Minute).UnixMilli()}, starts)
	plain, starts := run(false)
	require.Equal(t, []int64{at.Add(-10*time.Minute-2*time.Hour).UnixMilli() + 1}, starts)
	require.Equal(t, plain, narrowed)
	require.Contains(t, narrowed, "=>\n40 @[")
}
