package impact

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/resultscache"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// countingEngine is Prometheus' engine, counting the range queries it is
// asked for, by expression and range.
type countingEngine struct {
	promql.QueryEngine
	mu     sync.Mutex
	ranges map[string]int
}

func (c *countingEngine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	c.mu.Lock()
	c.ranges[fmt.Sprintf("%s %d..%d", qs, start.UnixMilli(), end.UnixMilli())]++
	c.mu.Unlock()
	return c.QueryEngine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
}

func (c *countingEngine) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.ranges
	c.ranges = map[string]int{}
	return r
}

// recordingPacer runs each step at once, counting them.
type recordingPacer struct {
	mu    sync.Mutex
	steps int
}

func (p *recordingPacer) Run(_ context.Context, step func()) error {
	p.mu.Lock()
	p.steps++
	p.mu.Unlock()
	step()
	return nil
}

// TestEngineEvaluatesASpanOnce: within a span, the range queries of an
// expression on its grid are one evaluation over the span, and each
// answers exactly what the engine answers over its own range; queries
// whose value may depend on the range, or off the grid, run as asked.
func TestEngineEvaluatesASpanOnce(t *testing.T) {
	db := storagetest.Open(t, t.TempDir())
	base := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	app := db.Appender(context.Background())
	for _, svc := range []string{"a", "b"} {
		for _, code := range []string{"200", "500"} {
			v := 0.0
			ls := labels.FromStrings("__name__", "http_requests_total", "code", code, "service", svc)
			for i := range 120 { // 20 minutes at 10 s, a gap in the middle
				if i >= 50 && i < 53 && code == "500" {
					continue
				}
				v += float64(r.IntN(100))
				_, err := app.Append(0, ls, base.Add(time.Duration(i)*10*time.Second).UnixMilli(), v)
				require.NoError(t, err)
			}
		}
		for _, le := range []string{"0.1", "1", "+Inf"} {
			v := 0.0
			ls := labels.FromStrings("__name__", "http_request_duration_seconds_bucket", "le", le, "service", svc)
			for i := range 120 {
				v += float64(r.IntN(50))
				_, err := app.Append(0, ls, base.Add(time.Duration(i)*10*time.Second).UnixMilli(), v)
				require.NoError(t, err)
			}
		}
	}
	require.NoError(t, app.Commit())

	prom := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, EnableAtModifier: true, EnableNegativeOffset: true})
	t.Cleanup(func() { _ = prom.Close() })
	inner := &countingEngine{QueryEngine: prom, ranges: map[string]int{}}
	pacer := &recordingPacer{}
	e := &Engine{Inner: inner, Parser: levpromql.NewParser(), RangeDependent: levpromql.EventFunctions(), Pacer: pacer}

	step := 10 * time.Second
	from, to := base.Add(5*time.Minute), base.Add(15*time.Minute)
	mid := from.Add(5 * time.Minute)
	at := func(d time.Time) int64 { return d.UnixMilli() }
	run := func(ctx context.Context, eng promql.QueryEngine, qs string, s, en time.Time) promql.Matrix {
		t.Helper()
		q, err := eng.NewRangeQuery(ctx, db, nil, qs, s, en, step)
		require.NoError(t, err)
		defer q.Close()
		res := q.Exec(ctx)
		require.NoError(t, res.Err)
		m, err := res.Matrix()
		require.NoError(t, err)
		return resultscache.CopyMatrix(m)
	}

	widened := []string{
		`sum(rate(http_requests_total{service="a"}[1m]))`,
		`(sum(rate(http_requests_total{service="a",code=~"5.."}[1m])) or vector(0)) / sum(rate(http_requests_total{service="a"}[1m]))`,
		`histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="a"}[1m])))`,
		`rate(http_requests_total{code="500"}[30s])`, // the gap: series without points in a part
		`http_requests_total offset 1m`,
	}
	for _, qs := range widened {
		ctx := withSpan(context.Background(), from, to, step)
		// The baseline's and the canary's sides, and both again.
		sides := [][2]time.Time{{from, mid}, {mid, to}, {from, mid}, {mid.Add(step), to.Add(-step)}}
		var got []promql.Matrix
		var wg sync.WaitGroup
		got = make([]promql.Matrix, len(sides))
		for i, sd := range sides {
			wg.Go(func() { got[i] = run(ctx, e, qs, sd[0], sd[1]) })
		}
		wg.Wait()
		require.Equal(t, map[string]int{fmt.Sprintf("%s %d..%d", qs, at(from), at(to)): len(sides)}, inner.take(),
			"%s: made over the span for each side, evaluated once", qs)
		for i, sd := range sides {
			want := run(context.Background(), prom, qs, sd[0], sd[1])
			require.Equal(t, want, got[i], "%s over %s..%s", qs, sd[0], sd[1])
		}
		require.NotEmpty(t, got[0], qs)
	}

	// Run as asked: values that may depend on the range, steps off the
	// span's grid or outside it, another step, no span.
	asked := []struct {
		qs     string
		s, en  time.Time
		step   time.Duration
		noSpan bool
	}{
		{qs: `sum(http_requests_total @ start())`, s: from, en: mid},
		{qs: `max_over_time(rate(http_requests_total[1m])[2m:10s])`, s: from, en: mid},
		{qs: `sum(rate(http_requests_total[step()*6]))`, s: from, en: mid},
		{qs: `over_windows(rate(http_requests_total[5m]), change_event_active{event_name="deploy"})`, s: from, en: mid},
		{qs: `sum(rate(http_requests_total[1m]))`, s: from.Add(time.Second), en: mid},
		{qs: `sum(rate(http_requests_total[1m]))`, s: from.Add(-step), en: mid},
		{qs: `sum(rate(http_requests_total[1m]))`, s: from, en: mid, step: 20 * time.Second},
		{qs: `sum(rate(http_requests_total[1m]))`, s: from, en: mid, noSpan: true},
	}
	for _, a := range asked {
		ctx := withSpan(context.Background(), from, to, step)
		if a.noSpan {
			ctx = context.Background()
		}
		st := step
		if a.step != 0 {
			st = a.step
		}
		q, err := e.NewRangeQuery(ctx, db, nil, a.qs, a.s, a.en, st)
		require.NoError(t, err, a.qs)
		res := q.Exec(ctx)
		q.Close()
		require.Equal(t, map[string]int{fmt.Sprintf("%s %d..%d", a.qs, at(a.s), at(a.en)): 1}, inner.take(), a.qs)
		_ = res
	}

	// Only the scheduler's queries are paced, spanned or not.
	require.Zero(t, pacer.steps)
	bg := background(withSpan(context.Background(), from, to, step))
	run(bg, e, widened[0], from, mid)
	run(bg, e, widened[0], mid, to)
	run(background(context.Background()), e, widened[0], from, mid)
	require.Equal(t, 2, pacer.steps, "one evaluation over the span and one without a span")
	inner.take()

	// An error is every side's.
	ctx := withSpan(context.Background(), from, to, step)
	q, err := e.NewRangeQuery(ctx, db, nil, `sum(rate(http_requests_total[1m]))`, from, mid, step)
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, q.Exec(cctx).Err)
	q.Close()
}

func TestAlignDown(t *testing.T) {
	ts := time.Date(2026, 12, 5, 12, 3, 27, 500e6, time.UTC)
	require.Equal(t, time.Date(2026, 12, 5, 12, 3, 20, 0, time.UTC), alignDown(ts, 10*time.Second))
	require.Equal(t, ts.Truncate(time.Minute), alignDown(ts, time.Minute))
	require.Equal(t, int64(0), alignDown(ts, 7*time.Second).UnixMilli()%7000)
	require.Equal(t, 10*time.Second, stepFor(30*time.Hour))
	require.Equal(t, 11*time.Second, stepFor(33*time.Hour)) // 33h/11000 = 10.8s, up to whole seconds
}
