package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/events"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

// The event-window benchmarks evaluate each event-window function, as an
// instant query at the end of 2 h of data (100k counters, a sample every
// 15 s), with 1,000 windows (100 services x 10 deploys, every 12 minutes,
// 6 minutes long, 1m7s after the hour, off the sample grid), next to the hand-written PromQL
// that gives the same answer when the durations are known in advance. Both
// run on levitated's store, merged with the event store as the server does,
// through the engine pkg/promql builds; kind=promql-2h is the plain range
// function over the same written range (2h), which reads as many samples as
// the event-window function does. LEVITATED_BENCH_SERIES overrides the
// number of series.

const (
	efServices = 100
	efDeploys  = 10
	efSpan     = 2 * time.Hour
	efEvery    = 12 * time.Minute
	efLength   = 6 * time.Minute
	efOffGrid  = 7 * time.Second
)

type efEnv struct {
	db      *storage.DB
	events  *eventstore.Store
	engine  *promql.Engine
	end     time.Time
	starts  []time.Time // deploy starts, the same for every service
	nSeries int
}

func newEFEnv(b *testing.B) *efEnv {
	b.Helper()
	n := 100_000
	if v := os.Getenv("LEVITATED_BENCH_SERIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	db, err := storage.Open(b.TempDir(), storage.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	end := time.Now().Add(-time.Hour).Truncate(time.Hour)
	begin := end.Add(-efSpan)
	es := eventstore.New(storagetest.Namespace(b, db, storage.OwnerEvents), eventstore.Options{Now: func() time.Time { return end.Add(time.Hour) }})

	ctx := context.Background()
	steps := int(efSpan/(15*time.Second)) + 1
	app := db.Appender(ctx)
	pending := 0
	for i := range n {
		lset := labels.FromStrings("__name__", "http_requests_total", "instance", fmt.Sprintf("i-%d", i), "service", fmt.Sprintf("svc-%d", i%efServices))
		var ref promstorage.SeriesRef
		for s := range steps {
			v := float64(s * (1 + i%7))
			if ref, err = app.Append(ref, lset, begin.Add(time.Duration(s)*15*time.Second).UnixMilli(), v); err != nil {
				b.Fatal(err)
			}
		}
		if pending += steps; pending >= 100_000 {
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
			app, pending = db.Appender(ctx), 0
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(ctx); err != nil {
		b.Fatal(err)
	}

	tid, err := db.TenantID(ctx, tenant.Default)
	if err != nil {
		b.Fatal(err)
	}
	env := &efEnv{db: db, events: es, end: end, nSeries: n}
	for d := range efDeploys {
		start := begin.Add(time.Duration(d)*efEvery + time.Minute + efOffGrid)
		env.starts = append(env.starts, start)
		var evs []events.Event
		for s := range efServices {
			attrs := map[string]string{"service": fmt.Sprintf("svc-%d", s)}
			evs = append(evs,
				events.Event{Name: "deploy", State: events.StateStart, Time: start, Attributes: attrs},
				events.Event{Name: "deploy", State: events.StateStop, Time: start.Add(efLength), Attributes: attrs})
		}
		if _, err := es.Append(ctx, tid, evs); err != nil {
			b.Fatal(err)
		}
	}
	opts := levpromql.DefaultOptions()
	opts.MaxSamples = 200_000_000
	opts.Timeout = 10 * time.Minute
	env.engine, err = levpromql.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.engine.Close() })
	return env
}

func (e *efEnv) queryable() promstorage.Queryable {
	return levpromql.NewQueryable(e.db, e.events.Queryable(e.db))
}

func (e *efEnv) run(tb testing.TB, q string) promql.Vector {
	ctx := context.Background()
	qry, err := e.engine.NewInstantQuery(ctx, e.queryable(), nil, q, e.end)
	if err != nil {
		tb.Fatal(err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		tb.Fatal(res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		tb.Fatal(err)
	}
	out := make(promql.Vector, len(v))
	copy(out, v)
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Metric, out[j].Metric) < 0 })
	return out
}

func millis(d time.Duration) string { return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms" }

func BenchmarkEventFunctions(b *testing.B) {
	env := newEFEnv(b)
	last := env.starts[len(env.starts)-1]
	since := env.end.Sub(last)                     // from the latest deploy's start to the end
	afterOffset := env.end.Sub(last.Add(efLength)) // the window's end
	beforeOffset := env.end.Sub(last)              // the window's start
	const w = `change_event_active{event_name="deploy"}`
	const m = `http_requests_total`
	cases := []struct{ name, event, promql string }{
		{"increase_since", `increase_since(` + m + `[2h], ` + w + `)`, `increase(` + m + `[` + millis(since) + `])`},
		{"rate_since", `rate_since(` + m + `[2h], ` + w + `)`, `rate(` + m + `[` + millis(since) + `])`},
		{"avg_since", `avg_since(` + m + `[2h], ` + w + `)`, `avg_over_time(` + m + `[` + millis(since) + `])`},
		{"sum_since", `sum_since(` + m + `[2h], ` + w + `)`, `sum_over_time(` + m + `[` + millis(since) + `])`},
		{"min_since", `min_since(` + m + `[2h], ` + w + `)`, `min_over_time(` + m + `[` + millis(since) + `])`},
		{"max_since", `max_since(` + m + `[2h], ` + w + `)`, `max_over_time(` + m + `[` + millis(since) + `])`},
		{"count_since", `count_since(` + m + `[2h], ` + w + `)`, `count_over_time(` + m + `[` + millis(since) + `])`},
		{"quantile_since", `quantile_since(0.9, ` + m + `[2h], ` + w + `)`, `quantile_over_time(0.9, ` + m + `[` + millis(since) + `])`},
		{"after_before_ratio", `after_before_ratio(rate(` + m + `[2h]), ` + w + `)`,
			`rate(` + m + `[6m] offset ` + millis(afterOffset) + `) / rate(` + m + `[6m] offset ` + millis(beforeOffset) + `)`},
		{"after_before_difference", `after_before_difference(avg_over_time(` + m + `[2h]), ` + w + `)`,
			`avg_over_time(` + m + `[6m] offset ` + millis(afterOffset) + `) - avg_over_time(` + m + `[6m] offset ` + millis(beforeOffset) + `)`},
		{"time_since_window_start", `time_since_window_start(` + w + `)`, `time() - max_over_time(change_event_window_start_seconds{event_name="deploy"}[2h])`},
		{"time_since_window_end", `time_since_window_end(` + w + `)`, `time() - max_over_time(change_event_window_end_seconds{event_name="deploy"}[2h])`},
	}
	for _, c := range cases {
		// Same answer first (to 1e-9 relative), then the timings.
		got, want := env.run(b, c.event), env.run(b, c.promql)
		if len(got) != len(want) || len(got) == 0 {
			b.Fatalf("%s: %d series, hand-written PromQL %d", c.name, len(got), len(want))
		}
		for i := range got {
			g, w := got[i].F, want[i].F
			if !labels.Equal(got[i].Metric, want[i].Metric) || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
				b.Fatalf("%s: %s %v, hand-written PromQL %s %v", c.name, got[i].Metric, g, want[i].Metric, w)
			}
		}
		kinds := map[string]string{"event": c.event, "promql": c.promql}
		if full := strings.Replace(c.promql, "["+millis(since)+"]", "[2h]", 1); full != c.promql {
			// The same range function over the whole written range: what
			// reading 2h of samples per series costs by itself.
			kinds["promql-2h"] = full
		}
		for kind, q := range kinds {
			b.Run(fmt.Sprintf("fn=%s/series=%d/windows=%d/kind=%s", c.name, env.nSeries, efServices*efDeploys, kind), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					env.run(b, q)
				}
			})
		}
	}
}
