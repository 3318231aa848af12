package ruler_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/ruler"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

const sideBySideRules = `groups:
  - name: errors
    interval: 15s
    rules:
      - record: service:errors:rate1m
        expr: sum by (service) (rate(errors_total[1m]))
      - alert: HighErrors
        expr: service:errors:rate1m > 0.1
        for: 1m
        keep_firing_for: 30s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} at {{ $value | humanize }}"
      - alert: NothingHere
        expr: absent(nothing_here)
      - record: service:latency:max
        expr: max by (service) (latency_seconds) * on() group_left() count(errors_total)
`

// TestSideBySideWithPrometheus evaluates the same rule file over the same
// data at the same timestamps twice: with Prometheus' rule manager and
// engine over Prometheus' TSDB (util/teststorage), and with levitated's
// ruler over levitated's store and engine. After every evaluation the
// alerts (labels, state, active/fired/resolved times, value, rendered
// annotations) are equal, and at the end so is every series the rules
// wrote: the recorded series, ALERTS and ALERTS_FOR_STATE, stale markers
// included.
func TestSideBySideWithPrometheus(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yml")
	require.NoError(t, os.WriteFile(file, []byte(sideBySideRules), 0o644))

	base := time.Now().Truncate(time.Minute).Add(-20 * time.Minute)
	prom := teststorage.New(t)
	lev := storagetest.New(t)
	ctx := tenant.NewContext(context.Background(), tenant.Default)
	// 10 minutes every 15 s: service a +1 per sample (0.067/s), b +3
	// (0.2/s) until 6m, then flat; latency per service.
	for _, st := range []storage.Appendable{prom, lev} {
		app := st.Appender(ctx)
		for i := 0; i <= 40; i++ {
			ts := base.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
			b := float64(3 * min(i, 24))
			for _, s := range []struct {
				ls labels.Labels
				v  float64
			}{
				{labels.FromStrings("__name__", "errors_total", "service", "a"), float64(i)},
				{labels.FromStrings("__name__", "errors_total", "service", "b"), b},
				{labels.FromStrings("__name__", "latency_seconds", "service", "a"), 0.1 + float64(i%3)/100},
				{labels.FromStrings("__name__", "latency_seconds", "service", "b"), 0.2},
			} {
				_, err := app.Append(0, s.ls, ts, s.v)
				require.NoError(t, err)
			}
		}
		require.NoError(t, app.Commit())
	}

	// Prometheus: its engine, its manager, its TSDB.
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 5e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	pm := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(engine, prom),
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Context:      ctx,
		AppendableV2: prom,
		Queryable:    prom,
		Parser:       levpromql.NewParser(),
	})
	require.NoError(t, pm.Update(time.Minute, []string{file}, labels.EmptyLabels(), "", nil))

	// levitated: its engine, its ruler, its store.
	levEngine, err := levpromql.New(levpromql.DefaultOptions())
	require.NoError(t, err)
	r, err := ruler.New(ruler.Options{Files: []string{file}}, ruler.Sources{
		Engine: levEngine, Queryable: lev, Appendable: lev, Parser: levpromql.NewParser(),
	})
	require.NoError(t, err)
	lm := r.Manager(tenant.Default)
	require.NotNil(t, lm)

	pg, lg := pm.RuleGroups(), lm.RuleGroups()
	require.Len(t, pg, 1)
	require.Len(t, lg, 1)
	fired, resolved := false, false
	for i := 8; i <= 40; i++ {
		ts := base.Add(time.Duration(i) * 15 * time.Second)
		pg[0].Eval(ctx, ts)
		lg[0].Eval(ctx, ts)
		if i == 8 {
			// As the group's loop does after its first evaluation:
			// ALERTS and ALERTS_FOR_STATE are written from then on.
			pg[0].RestoreForState(ts)
			lg[0].RestoreForState(ts)
		}
		want, got := alertsOf(pg[0]), alertsOf(lg[0])
		require.Equal(t, want, got, "alerts after the evaluation at %v", ts.Sub(base))
		for _, a := range want {
			if strings.HasPrefix(a, `{alertname="HighErrors"`) {
				fired = fired || strings.Contains(a, "state=firing")
				resolved = resolved || strings.Contains(a, "state=inactive") && !strings.Contains(a, "resolved=0001")
			}
		}
		for j, rule := range pg[0].Rules() {
			require.Equal(t, rule.Health(), lg[0].Rules()[j].Health(), rule.Name())
			require.Equal(t, fmt.Sprint(rule.LastError()), fmt.Sprint(lg[0].Rules()[j].LastError()), rule.Name())
		}
	}
	require.True(t, fired, "HighErrors never fired: the test data mean nothing")
	require.True(t, resolved, "HighErrors never resolved: the test data mean nothing")

	mint, maxt := base.UnixMilli(), base.Add(11*time.Minute).UnixMilli()
	want := written(t, ctx, prom, mint, maxt)
	got := written(t, ctx, lev, mint, maxt)
	require.Contains(t, want, `{__name__="service:errors:rate1m", service="b"}`)
	require.Contains(t, want, `{__name__="ALERTS_FOR_STATE", alertname="HighErrors", service="b", severity="page"}`)
	require.Contains(t, want, `{__name__="service:latency:max", service="a"}`)
	require.Equal(t, want, got)

	// Stop both managers (their groups wait for Run).
	done, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, r.Run(done))
	go pm.Run()
	pm.Stop()
}

// alertsOf renders every alert of g's alerting rules, sorted: pending,
// firing, and resolved ones still kept (and sent) for 15 minutes.
func alertsOf(g *rules.Group) []string {
	var out []string
	for _, rule := range g.Rules() {
		ar, ok := rule.(*rules.AlertingRule)
		if !ok {
			continue
		}
		ar.ForEachActiveAlert(func(a *rules.Alert) {
			out = append(out, fmt.Sprintf("%s state=%s active=%v fired=%v resolved=%v keep=%v value=%v annotations=%s",
				a.Labels, a.State, a.ActiveAt.UTC(), a.FiredAt.UTC(), a.ResolvedAt.UTC(), a.KeepFiringSince.UTC(), a.Value, a.Annotations))
		})
	}
	slices.Sort(out)
	return out
}

// written returns every series the rules wrote (recorded series, ALERTS,
// ALERTS_FOR_STATE) with its samples; stale markers as "stale".
func written(t *testing.T, ctx context.Context, q storage.Queryable, mint, maxt int64) map[string][]string {
	t.Helper()
	qr, err := q.Querier(mint, maxt)
	require.NoError(t, err)
	defer qr.Close()
	ss := qr.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", "service:.*|ALERTS|ALERTS_FOR_STATE"))
	out := map[string][]string{}
	for ss.Next() {
		s := ss.At()
		var samples []string
		it := s.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			sv := fmt.Sprint(v)
			if math.Float64bits(v) == 0x7ff0000000000002 {
				sv = "stale"
			}
			samples = append(samples, fmt.Sprintf("%d=%s", ts-mint, sv))
		}
		require.NoError(t, it.Err())
		out[s.Labels().String()] = samples
	}
	require.NoError(t, ss.Err())
	return out
}
