package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	promstorage "github.com/prometheus/prometheus/storage"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/ruler"
	"github.com/levitated/levitated/pkg/tenant"
)

// Rule evaluation at the size: 1,000 recording rules (10 groups
// of 100) over 100,000 series (1,000 metrics of 100 series, 10 minutes at
// 15 s), each rule sum by (job) (rate(m_N[5m])). One op is one round: every
// group evaluated once, concurrently, as the rule manager's loops do.
// cpu-ms/round is the process CPU per round; last-group-ms the time from
// the round's start until its last group finished (the lag of the last
// group). levitated: its ruler (Prometheus' rules.Manager over
// levitated's engine and store); prometheus: Prometheus' rules.Manager over
// Prometheus' engine and TSDB; same data, same rules, same timestamps.
const (
	ruleMetrics     = 1000
	seriesPerMetric = 100
	ruleGroups      = 10
	ruleSamples     = 41 // 10 minutes at 15 s
)

func BenchmarkRuleEvaluation(b *testing.B) {
	dir := b.TempDir()
	file := filepath.Join(dir, "rules.yml")
	var sb strings.Builder
	sb.WriteString("groups:\n")
	per := ruleMetrics / ruleGroups
	for g := range ruleGroups {
		fmt.Fprintf(&sb, "  - name: g%d\n    interval: 15s\n    rules:\n", g)
		for r := range per {
			m := g*per + r
			fmt.Fprintf(&sb, "      - record: job:m_%d:rate5m\n        expr: sum by (job) (rate(m_%d[5m]))\n", m, m)
		}
	}
	if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, kind := range storeKinds {
		b.Run("store="+kind+",rules=1000,series=100k", func(b *testing.B) {
			db := openStore(b, kind, filepath.Join(b.TempDir(), "db"))
			defer db.Close()
			ctx := tenant.NewContext(context.Background(), tenant.Default)
			loadRuleSeries(b, ctx, db)

			var groups []*rules.Group
			switch kind {
			case "levitated":
				engine, err := levpromql.New(levpromql.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				r, err := ruler.New(ruler.Options{Files: []string{file}}, ruler.Sources{
					Engine: engine, Queryable: db, Appendable: db, Parser: levpromql.NewParser(),
				})
				if err != nil {
					b.Fatal(err)
				}
				groups = r.Manager(tenant.Default).RuleGroups()
				defer func() {
					done, cancel := context.WithCancel(context.Background())
					cancel()
					_ = r.Run(done)
				}()
			case "prometheus":
				engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 5e7, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute})
				m := rules.NewManager(&rules.ManagerOptions{
					QueryFunc:    rules.EngineQueryFunc(engine, db),
					NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
					Context:      ctx,
					AppendableV2: db,
					Queryable:    db,
				})
				if err := m.Update(time.Minute, []string{file}, labels.EmptyLabels(), "", nil); err != nil {
					b.Fatal(err)
				}
				groups = m.RuleGroups()
				defer func() { go m.Run(); m.Stop() }()
			}
			if len(groups) != ruleGroups {
				b.Fatalf("%d groups loaded", len(groups))
			}

			// Evaluate at the end of the data, 1 ms later each round (the
			// recorded series take one sample per round, in order).
			ts := time.UnixMilli(t0 + (ruleSamples-1)*scrapeInterval)
			var cpu, lag time.Duration
			b.ResetTimer()
			for b.Loop() {
				ts = ts.Add(time.Millisecond)
				c0, w0 := cpuNanos(), time.Now()
				var wg sync.WaitGroup
				for _, g := range groups {
					wg.Go(func() { g.Eval(ctx, ts) })
				}
				wg.Wait()
				lag += time.Since(w0)
				cpu += time.Duration(cpuNanos() - c0)
			}
			b.StopTimer()
			for _, g := range groups {
				for _, r := range g.Rules() {
					if err := r.LastError(); err != nil {
						b.Fatalf("%s: %v", r.Name(), err)
					}
				}
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/round")
			b.ReportMetric(float64(lag.Milliseconds())/float64(b.N), "last-group-ms")
		})
	}
}

// loadRuleSeries writes m_0..m_999{job, instance}: 100 series per metric,
// ruleSamples counter samples each.
func loadRuleSeries(b *testing.B, ctx context.Context, db benchStore) {
	b.Helper()
	for m := range ruleMetrics {
		app := db.AppenderV2(ctx)
		for s := range seriesPerMetric {
			ls := labels.FromStrings("__name__", fmt.Sprintf("m_%d", m), "job", fmt.Sprintf("job-%d", s%10), "instance", fmt.Sprintf("i-%d", s))
			var ref promstorage.SeriesRef
			for i := range ruleSamples {
				var err error
				ref, err = app.Append(ref, ls, 0, t0+int64(i)*scrapeInterval, float64(i*(s+1)), nil, nil, promstorage.AOptions{})
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
