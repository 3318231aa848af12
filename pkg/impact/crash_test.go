package impact_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/canaryapi"
	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/impact"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

// crashEnv is levitated's change intelligence over a real store on a
// filesystem: the event store, the native analysis service as the judge,
// and the impact service's scheduler running.
type crashEnv struct {
	db     *storage.DB
	events *eventstore.Store
	svc    *impact.Service
	tid    uint32
	stop   func()
}

func openCrashEnv(t *testing.T, fs vfs.FS, config string) *crashEnv {
	t.Helper()
	db := storagetest.Open(t, "/db", func(o *storage.Options) {
		o.FS = fs
		o.OutOfOrderWindow = time.Hour
		o.CheckpointInterval = time.Hour
	})
	ev := eventstore.New(storagetest.Namespace(t, db, storage.OwnerEvents), eventstore.Options{})
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	analyzer := canaryapi.New(&rangequery.Runner{Engine: engine, Queryable: db}, ev, db, levpromql.NewParser(), canaryapi.Options{})
	svc, err := impact.New(impact.Deps{Analyzer: analyzer, Events: ev, Samples: db, Tenants: db, Parser: levpromql.NewParser()},
		impact.Options{ConfigFile: config, Interval: 5 * time.Millisecond})
	require.NoError(t, err)
	tid, err := db.TenantID(context.Background(), tenant.Default)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	e := &crashEnv{db: db, events: ev, svc: svc, tid: tid}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
		_ = engine.Close()
		require.NoError(t, db.Close())
	}
	t.Cleanup(e.stop)
	return e
}

// impactEvents lists the change_impact events, by change id.
func (e *crashEnv) impactEvents(t *testing.T) map[string][]events.Event {
	t.Helper()
	out := map[string][]events.Event{}
	q := events.Query{Name: impact.EventImpact, Limit: events.MaxLimit}
	for {
		page, next, err := e.events.List(context.Background(), e.tid, q)
		require.NoError(t, err)
		for _, ev := range page {
			out[ev.Attributes["change_id"]] = append(out[ev.Attributes["change_id"]], ev)
		}
		if next == "" {
			return out
		}
		q.After = next
	}
}

// samples returns the samples of the series matching ms, by series.
func (e *crashEnv) samples(t *testing.T, ms ...*labels.Matcher) map[string][][2]float64 {
	t.Helper()
	q, err := e.db.Querier(math.MinInt64/2, math.MaxInt64/2)
	require.NoError(t, err)
	defer q.Close()
	out := map[string][][2]float64{}
	ss := q.Select(context.Background(), false, nil, ms...)
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], [2]float64{float64(ts), v})
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, ss.Err())
	return out
}

// writeTraffic writes 14 minutes from base of a service's request
// counters, scraped every 10 s: 100 requests per second, 1 % errors, and
// errRatio from 7m on.
func writeTraffic(t *testing.T, db *storage.DB, service string, base time.Time, errRatio float64, r *rand.Rand) {
	t.Helper()
	app := db.Appender(context.Background())
	okLs := labels.FromStrings("__name__", "http_requests_total", "code", "200", "service", service)
	badLs := labels.FromStrings("__name__", "http_requests_total", "code", "500", "service", service)
	var ok, bad float64
	for at := time.Duration(0); at < 14*time.Minute; at += 10 * time.Second {
		share := 0.01
		if at >= 7*time.Minute {
			share = errRatio
		}
		n := 1000 + 30*r.NormFloat64()
		e := n * share * (1 + 0.02*r.NormFloat64()) // little noise: the verdicts are not what is tested
		ok, bad = ok+n-e, bad+e
		for _, s := range []struct {
			ls labels.Labels
			v  float64
		}{{okLs, ok}, {badLs, bad}} {
			_, err := app.Append(0, s.ls, base.Add(at).UnixMilli(), s.v)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
}

// TestCrashJudgesEachChangeOnce is the crash test of the scheduler's
// keyspace (the change_impact events, its commit records, and the series
// they derive): on Pebble's crashable in-memory filesystem, changes are
// stored and the scheduler judges them; crash images are taken at random
// moments while judgements are being recorded (keeping a random part of the
// unsynced data), three times in a row, each image reopened and the
// scheduler run on it. At the end every change has exactly one
// change_impact event, exactly one change_impact_score sample (at the
// event's time, with the event's score), and each service's
// change_deployments_total one sample per judgement, ending at the number
// of its changes.
func TestCrashJudgesEachChangeOnce(t *testing.T) {
	seeds := 4
	if testing.Short() {
		seeds = 2
	}
	first := uint64(time.Now().UnixNano())
	if v := os.Getenv("LEVITATED_CRASH_SEED"); v != "" { // rerun a failed run
		s, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
		first, seeds = s, 1
	}
	config := filepath.Join(t.TempDir(), "impact.yml")
	require.NoError(t, os.WriteFile(config, []byte("events:\n  delay: 1s\n  point_window: 3m\n"), 0o600))
	for seed := first; seed < first+uint64(seeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("LEVITATED_CRASH_SEED=%d reruns this seed", seed)
			crashAndJudge(t, seed, config)
		})
	}
}

func crashAndJudge(t *testing.T, seed uint64, config string) {
	rng := rand.New(rand.NewPCG(seed, 17))
	fs := vfs.NewCrashableMem()
	e := openCrashEnv(t, fs, config)
	ctx := context.Background()

	// Six services; three regress at 7m. Each has two deploy windows and a
	// config-change point event: 18 changes.
	base := time.Now().Truncate(10 * time.Second).Add(-20 * time.Minute)
	type change struct{ id, service, name, want string }
	var changes []change
	var evs []events.Event
	for i := range 6 {
		svc := fmt.Sprintf("svc%d", i)
		errRatio := 0.01
		if i%2 == 1 {
			errRatio = 0.10
		}
		writeTraffic(t, e.db, svc, base, errRatio, rng)
		attrs := map[string]string{"service": svc}
		for _, w := range [][2]time.Duration{{4 * time.Minute, 6 * time.Minute}, {7 * time.Minute, 9 * time.Minute}} {
			evs = append(evs,
				events.Event{Name: "deploy", State: events.StateStart, Time: base.Add(w[0]), Attributes: attrs},
				events.Event{Name: "deploy", State: events.StateStop, Time: base.Add(w[1]), Attributes: attrs})
		}
		evs = append(evs, events.Event{Name: "config-change", State: events.StateStop, Time: base.Add(10 * time.Minute), Attributes: attrs})
	}
	// Stored while the scheduler runs: the first judgements start at once.
	out, err := e.events.Append(ctx, e.tid, evs)
	require.NoError(t, err)
	for _, ev := range out {
		if ev.State == events.StateStart || ev.Window == nil {
			want := impact.VerdictPass
			if i, _ := strconv.Atoi(ev.Attributes["service"][3:]); i%2 == 1 && ev.Time.Equal(base.Add(7*time.Minute)) {
				want = impact.VerdictFail // the deploy during which errors rose tenfold
			}
			changes = append(changes, change{ev.ID, ev.Attributes["service"], ev.Name, want})
		}
	}
	require.Len(t, changes, 18)

	for cycle := range 3 {
		// Crash once some judgements are recorded, at a random point.
		seen := len(e.impactEvents(t))
		target := seen + rng.IntN(max(1, len(changes)-seen))
		for len(e.impactEvents(t)) < target {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
		judged := len(e.impactEvents(t))
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		t.Logf("cycle %d: crash after %d (%d seen) of %d judgements", cycle, target, judged, len(changes))
		e.stop()
		fs = crashed
		e = openCrashEnv(t, fs, config)
	}

	// The last image: the scheduler judges what is left.
	for {
		got := e.impactEvents(t)
		if len(got) == len(changes) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.stop()
	// Once more, from the stored state only: nothing is judged twice.
	e = openCrashEnv(t, fs, config)
	time.Sleep(100 * time.Millisecond) // many ticks of 5ms
	e.stop()
	e = openCrashEnv(t, fs, config)
	defer e.stop()

	recorded := e.impactEvents(t)
	perService := map[[2]string]int{}
	for _, c := range changes {
		evs := recorded[c.id]
		require.Len(t, evs, 1, "change %s (%s of %s) judged %d times", c.id, c.name, c.service, len(evs))
		ev := evs[0]
		perService[[2]string{c.service, c.name}]++
		scores := e.samples(t, labels.MustNewMatcher(labels.MatchEqual, "__name__", impact.MetricScore),
			labels.MustNewMatcher(labels.MatchEqual, "change_id", c.id))
		if ev.Value == nil {
			require.Empty(t, scores, "an inconclusive judgement has no score")
			continue
		}
		require.Len(t, scores, 1, "change %s: one change_impact_score series", c.id)
		for _, ss := range scores {
			require.Equal(t, [][2]float64{{float64(ev.Time.UnixMilli()), *ev.Value}}, ss, "change %s: one score sample, at the event's time", c.id)
		}
	}
	for k, n := range perService {
		dep := e.samples(t, labels.MustNewMatcher(labels.MatchEqual, "__name__", impact.MetricDeployments),
			labels.MustNewMatcher(labels.MatchEqual, "service", k[0]), labels.MustNewMatcher(labels.MatchEqual, "event_name", k[1]))
		require.Len(t, dep, 1)
		for _, ss := range dep {
			require.Len(t, ss, n, "%s %s: one change_deployments_total sample per judgement", k[0], k[1])
			require.Equal(t, float64(n), ss[len(ss)-1][1])
		}
	}
	// The deploys during which errors rose tenfold fail, the others pass.
	for _, c := range changes {
		require.Equal(t, c.want, recorded[c.id][0].Attributes["verdict"], "change %s: %s", c.id, recorded[c.id][0].Text)
	}
}
