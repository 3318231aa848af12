package eventstore

import (
	"context"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/tenant"
)

// promEnv is Prometheus' test TSDB holding samples, merged with the event
// store's querier for tenant 1, as the server merges them.
type promEnv struct {
	store  *Store
	tsdb   *teststorage.TestStorage
	engine *promql.Engine
}

func newPromEnv(t *testing.T) *promEnv {
	s, _, _ := newStore(t)
	ts := teststorage.New(t)
	t.Cleanup(func() { ts.Close() })
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	return &promEnv{store: s, tsdb: ts, engine: eng}
}

func (p *promEnv) queryable() storage.Queryable {
	// The composition the server's engine reads (NarrowingQuerier is idle
	// under Prometheus' own functions).
	return levpromql.NewQueryable(p.tsdb, storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		return p.store.Querier(1, mint, maxt), nil
	}))
}

func (p *promEnv) rangeQuery(t *testing.T, expr string, start, end time.Time, step time.Duration) promql.Matrix {
	t.Helper()
	q, err := p.engine.NewRangeQuery(context.Background(), p.queryable(), nil, expr, start, end, step)
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	m, err := res.Matrix()
	require.NoError(t, err)
	// The engine recycles the points on Close: copy them.
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric.Copy(), Floats: append([]promql.FPoint(nil), s.Floats...)}
	}
	return out
}

func (p *promEnv) instant(t *testing.T, expr string, ts time.Time) promql.Vector {
	t.Helper()
	q, err := p.engine.NewInstantQuery(context.Background(), p.queryable(), nil, expr, ts)
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	v, err := res.Vector()
	require.NoError(t, err)
	out := make(promql.Vector, len(v))
	for i, s := range v {
		out[i] = promql.Sample{Metric: s.Metric.Copy(), T: s.T, F: s.F}
	}
	return out
}

// seedWindows stores: deploy api [600s, 1200s), deploy web [1500s, 1530s),
// canary-step api open from 3000s; times relative to at(0).
func seedWindows(t *testing.T, s *Store) {
	appendOne(t, s, 1, ev("deploy", events.StateStart, 600, "service", "api"))
	appendOne(t, s, 1, ev("deploy", events.StateStop, 1200, "service", "api", "exit_code", "0"))
	appendOne(t, s, 1, ev("deploy", events.StateStart, 1500, "service", "web"))
	appendOne(t, s, 1, ev("deploy", events.StateStop, 1530, "service", "web"))
	appendOne(t, s, 1, ev("canary-step", events.StateStart, 3000, "service", "api", "weight", "20"))
	// Another tenant's window must not show.
	appendOne(t, s, 2, ev("deploy", events.StateStart, 0, "service", "api"))
}

func secs(ts int64) int { return int(time.UnixMilli(ts).Sub(at(0)) / time.Second) }

func TestActiveSeriesAtEveryInstantInsideTheWindow(t *testing.T) {
	p := newPromEnv(t)
	seedWindows(t, p.store)
	for _, step := range []time.Duration{7 * time.Second, 60 * time.Second, 5 * time.Minute} {
		m := p.rangeQuery(t, `change_event_active{event_name="deploy"}`, at(0), at(3600), step)
		got := map[string][]int{}
		for _, s := range m {
			for _, pt := range s.Floats {
				require.Equal(t, 1.0, pt.F)
				got[s.Metric.Get("service")] = append(got[s.Metric.Get("service")], secs(pt.T))
			}
			require.Equal(t, labels.FromStrings("__name__", "change_event_active", "event_name", "deploy", "service", s.Metric.Get("service")), s.Metric)
		}
		want := map[string][]int{}
		for i := 0; i <= 3600; i += int(step / time.Second) {
			if i >= 600 && i < 1200 {
				want["api"] = append(want["api"], i)
			}
			if i >= 1500 && i < 1530 {
				want["web"] = append(want["web"], i)
			}
		}
		require.Equal(t, want, got, "step %s", step)
	}
	// An instant query deep inside a window longer than the lookback, and
	// right at the edges.
	for sec, want := range map[int]int{600: 1, 601: 1, 1199: 1, 1200: 0, 599: 0, 1000: 1, 1529: 1, 1530: 0} {
		v := p.instant(t, `change_event_active{event_name="deploy"}`, at(sec))
		require.Len(t, v, want, "at %d", sec)
	}
	// The open window runs until now (the store's clock, t0 = at(3600)) and
	// the future limit, not further.
	v := p.instant(t, `change_event_active{event_name="canary-step"}`, at(3600+600))
	require.Len(t, v, 1)
	require.Empty(t, p.instant(t, `change_event_active{event_name="canary-step"}`, at(3600+86400)))
	// An unbounded select stays bounded.
	ss := p.store.Querier(1, math.MinInt64, math.MaxInt64).Select(context.Background(), true, nil,
		labels.MustNewMatcher(labels.MatchEqual, "__name__", "change_event_active"), labels.MustNewMatcher(labels.MatchEqual, "event_name", "canary-step"))
	require.True(t, ss.Next())
	n := 0
	for it := ss.At().Iterator(nil); it.Next() != chunkenc.ValNone; n++ {
	}
	require.Equal(t, (600+600)/15+1, n, "from the start to now+10m, every 15 s")
	require.Equal(t, labels.FromStrings("__name__", "change_event_active", "event_name", "canary-step", "service", "api", "weight", "20"), v[0].Metric)
}

func TestWindowStartAndEndSeries(t *testing.T) {
	p := newPromEnv(t)
	seedWindows(t, p.store)
	start := float64(at(600).Unix())
	end := float64(at(1200).Unix())
	v := p.instant(t, `change_event_window_start_seconds{service="api"}`, at(900))
	require.Len(t, v, 1)
	require.Equal(t, start, v[0].F)
	v = p.instant(t, `change_event_window_end_seconds{service="api"}`, at(900))
	require.Len(t, v, 1)
	require.Equal(t, end, v[0].F)
	v = p.instant(t, `change_event_window_end_seconds{event_name="canary-step"}`, at(3100))
	require.Len(t, v, 1)
	require.True(t, math.IsInf(v[0].F, 1))
	// Window duration so far, for the event-window functions.
	v = p.instant(t, `time() - change_event_window_start_seconds{service="api"}`, at(900))
	require.Equal(t, 300.0, v[0].F)
}

func TestLast9ChangeEventsSamples(t *testing.T) {
	p := newPromEnv(t)
	seedWindows(t, p.store)
	m := p.rangeQuery(t, `last9_change_events{event_name="deploy", service="api"}`, at(0), at(1800), 60*time.Second)
	require.Len(t, m, 2)
	sort.Slice(m, func(i, j int) bool { return labels.Compare(m[i].Metric, m[j].Metric) < 0 })
	require.Equal(t, labels.FromStrings("__name__", "last9_change_events", "event_name", "deploy", "event_state", "start", "service", "api"), m[0].Metric)
	require.Equal(t, labels.FromStrings("__name__", "last9_change_events", "event_name", "deploy", "event_state", "stop", "exit_code", "0", "service", "api"), m[1].Metric)
	// One sample at the event time; PromQL's lookback carries it 5 minutes.
	var startPts, stopPts []int
	for _, pt := range m[0].Floats {
		require.Equal(t, 1.0, pt.F)
		startPts = append(startPts, secs(pt.T))
	}
	for _, pt := range m[1].Floats {
		require.Equal(t, 2.0, pt.F)
		stopPts = append(stopPts, secs(pt.T))
	}
	require.Equal(t, []int{600, 660, 720, 780, 840}, startPts) // the lookback is left-open: (t-5m, t]
	require.Equal(t, []int{1200, 1260, 1320, 1380, 1440}, stopPts)

	// The raw samples, with their exact timestamps.
	q, err := p.engine.NewInstantQuery(context.Background(), p.queryable(), nil, `last9_change_events{event_name="deploy"}[1h]`, at(3599))
	require.NoError(t, err)
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	raw, err := res.Matrix()
	require.NoError(t, err)
	total := 0
	for _, s := range raw {
		for _, pt := range s.Floats {
			total++
			require.Contains(t, []int{600, 1200, 1500, 1530}, secs(pt.T))
		}
	}
	q.Close()
	require.Equal(t, 4, total)
}

func TestJoinWithREDMetrics(t *testing.T) {
	p := newPromEnv(t)
	seedWindows(t, p.store)
	// http_requests_total for api and web, 5xx and 2xx, one sample every
	// 15 s over the hour, growing at different rates.
	app := p.tsdb.Appender(context.Background())
	for i := 0; i <= 240; i++ {
		ts := at(i * 15).UnixMilli()
		for _, s := range []struct {
			service, code string
			per           float64
		}{{"api", "500", 3}, {"api", "200", 50}, {"web", "503", 1}, {"db", "500", 7}} {
			_, err := app.Append(0, labels.FromStrings("__name__", "http_requests_total", "service", s.service, "code", s.code), ts, float64(i)*s.per)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())

	all := p.rangeQuery(t, `sum(rate(http_requests_total{code=~"5.."}[1m])) by (service)`, at(0), at(3600), 30*time.Second)
	joined := p.rangeQuery(t, `sum(rate(http_requests_total{code=~"5.."}[1m])) by (service) and on(service) change_event_active{event_name="deploy"}`,
		at(0), at(3600), 30*time.Second)
	byService := func(m promql.Matrix) map[string]map[int]float64 {
		out := map[string]map[int]float64{}
		for _, s := range m {
			pts := map[int]float64{}
			for _, pt := range s.Floats {
				pts[secs(pt.T)] = pt.F
			}
			out[s.Metric.Get("service")] = pts
		}
		return out
	}
	a, j := byService(all), byService(joined)
	require.Len(t, a, 3)
	want := map[string]map[int]float64{"api": {}, "web": {}}
	for sec := 600; sec < 1200; sec += 30 {
		want["api"][sec] = a["api"][sec]
	}
	want["web"][1500] = a["web"][1500]
	require.Equal(t, want, j)
	require.InDelta(t, 3.0/15, j["api"][900], 1e-9)
}

func TestSelectMatchersAndHints(t *testing.T) {
	p := newPromEnv(t)
	seedWindows(t, p.store)
	q := p.store.Querier(1, at(0).UnixMilli(), at(3600).UnixMilli())
	defer q.Close()
	ctx := context.Background()
	names := func(ss storage.SeriesSet) []string {
		var out []string
		for ss.Next() {
			out = append(out, ss.At().Labels().String())
		}
		require.NoError(t, ss.Err())
		return out
	}
	mm := func(t labels.MatchType, n, v string) *labels.Matcher { return labels.MustNewMatcher(t, n, v) }
	got := names(q.Select(ctx, true, nil, mm(labels.MatchRegexp, "__name__", "change_event_(active|window_start_seconds)"), mm(labels.MatchNotEqual, "service", "web"), mm(labels.MatchEqual, "event_name", "deploy")))
	require.Equal(t, []string{
		`{__name__="change_event_active", event_name="deploy", service="api"}`,
		`{__name__="change_event_window_start_seconds", event_name="deploy", service="api"}`,
	}, got)
	got = names(q.Select(ctx, true, nil, mm(labels.MatchNotRegexp, "__name__", "change_event_.*"), mm(labels.MatchRegexp, "service", "w.*")))
	require.Equal(t, []string{
		`{__name__="last9_change_events", event_name="deploy", event_state="start", service="web"}`,
		`{__name__="last9_change_events", event_name="deploy", event_state="stop", service="web"}`,
	}, got)
	require.Empty(t, names(q.Select(ctx, true, nil, mm(labels.MatchEqual, "__name__", "http_requests_total"))))

	// Func "series" returns the series without samples.
	ss := q.Select(ctx, true, &storage.SelectHints{Start: at(0).UnixMilli(), End: at(3600).UnixMilli(), Func: "series"}, mm(labels.MatchEqual, "__name__", "change_event_active"))
	n := 0
	for ss.Next() {
		n++
		require.Equal(t, chunkenc.ValNone, ss.At().Iterator(nil).Next())
	}
	require.Equal(t, 3, n)

	// Hints narrow the range: before the api window ends, web's is not there.
	got = names(q.Select(ctx, true, &storage.SelectHints{Start: at(0).UnixMilli(), End: at(1000).UnixMilli()}, mm(labels.MatchEqual, "__name__", "change_event_active")))
	require.Equal(t, []string{`{__name__="change_event_active", event_name="deploy", service="api"}`}, got)

	// Shards partition the series.
	all := names(q.Select(ctx, true, nil, mm(labels.MatchRegexp, "__name__", ".+")))
	require.Len(t, all, 3*3+5)
	var union []string
	for i := uint64(0); i < 3; i++ {
		union = append(union, names(q.Select(ctx, true, &storage.SelectHints{Start: at(0).UnixMilli(), End: at(3600).UnixMilli(), ShardCount: 3, ShardIndex: i}, mm(labels.MatchRegexp, "__name__", ".+")))...)
	}
	sort.Strings(union)
	sorted := append([]string(nil), all...)
	sort.Strings(sorted)
	require.Equal(t, sorted, union)
	require.Len(t, names(q.Select(ctx, true, &storage.SelectHints{Start: at(0).UnixMilli(), End: at(3600).UnixMilli(), Limit: 2}, mm(labels.MatchRegexp, "__name__", ".+"))), 2)

	// Stale marker at the stop.
	ss = q.Select(ctx, true, nil, mm(labels.MatchEqual, "__name__", "change_event_active"), mm(labels.MatchEqual, "service", "web"))
	require.True(t, ss.Next())
	it := ss.At().Iterator(nil)
	var pts [][2]float64
	for it.Next() != chunkenc.ValNone {
		ts, f := it.At()
		pts = append(pts, [2]float64{float64(secs(ts)), f})
	}
	require.Len(t, pts, 3)
	require.Equal(t, [2]float64{1500, 1}, pts[0])
	require.Equal(t, [2]float64{1515, 1}, pts[1])
	require.Equal(t, 1530.0, pts[2][0])
	require.True(t, value.IsStaleNaN(pts[2][1]))
}

func TestLabelNamesAndValues(t *testing.T) {
	p := newPromEnv(t)
	seedWindows(t, p.store)
	q := p.store.Querier(1, at(0).UnixMilli(), at(3600).UnixMilli())
	ctx := context.Background()
	vals, _, err := q.LabelValues(ctx, "service", nil, labels.MustNewMatcher(labels.MatchEqual, "event_name", "deploy"))
	require.NoError(t, err)
	require.Equal(t, []string{"api", "web"}, vals)
	vals, _, err = q.LabelValues(ctx, "__name__", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"change_event_active", "change_event_window_end_seconds", "change_event_window_start_seconds", "last9_change_events"}, vals)
	vals, _, err = q.LabelValues(ctx, "event_name", &storage.LabelHints{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, []string{"canary-step"}, vals)
	ns, _, err := q.LabelNames(ctx, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "change_event_active"))
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "event_name", "service", "weight"}, ns)
	ns, _, err = q.LabelNames(ctx, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "last9_change_events"), labels.MustNewMatcher(labels.MatchEqual, "event_state", "stop"))
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "event_name", "event_state", "exit_code", "service"}, ns)
	// A range before any event has no event series.
	early := p.store.Querier(1, at(0).UnixMilli(), at(100).UnixMilli())
	ns, _, err = early.LabelNames(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, ns)
}

// TestSegments covers overlapping windows of one label set: the
// latest-started active window gives the value, the union gives activity.
func TestSegments(t *testing.T) {
	ws := []window{{start: 0, end: 100}, {start: 50, end: 200}, {start: 120, end: 150}, {start: 300, end: math.MaxInt64, open: true}}
	segs := segments(ws)
	require.Equal(t, []segment{
		{from: 0, to: 50, w: ws[0]},
		{from: 50, to: 120, w: ws[1]},
		{from: 120, to: 150, w: ws[2]},
		{from: 150, to: 200, w: ws[1]},
		{from: 300, to: math.MaxInt64, w: ws[3]},
	}, segs)
	smp := gridSamples(segs, events.MetricActive, 0, 400)
	var stale []int64
	for _, s := range smp {
		if value.IsStaleNaN(s.f) {
			stale = append(stale, s.t)
		}
	}
	require.Equal(t, []int64{200}, stale)
}

// TestContextQuerier: the tenant comes from each call's context.
func TestContextQuerier(t *testing.T) {
	p := newPromEnv(t)
	seedWindows(t, p.store)
	resolve := func(_ context.Context, name string) (uint32, error) {
		switch name {
		case "team-a":
			return 1, nil
		case "team-b":
			return 2, nil
		}
		return 0, fmt.Errorf("no tenant %q", name)
	}
	q := p.store.ContextQuerier(tenant.IDFunc(resolve), at(0).UnixMilli(), at(3600).UnixMilli())
	for name, want := range map[string][]string{"team-a": {"api", "web"}, "team-b": {"api"}} {
		vals, _, err := q.LabelValues(tenant.NewContext(context.Background(), name), "service", nil, labels.MustNewMatcher(labels.MatchEqual, "event_name", "deploy"))
		require.NoError(t, err)
		require.Equal(t, want, vals, name)
	}
	_, _, err := q.LabelNames(tenant.NewContext(context.Background(), "nobody"), nil)
	require.EqualError(t, err, `resolve tenant "nobody": no tenant "nobody"`)
	ss := q.Select(tenant.NewContext(context.Background(), "nobody"), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "change_event_active"))
	require.False(t, ss.Next())
	require.Error(t, ss.Err())
}
