package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/bench/redgen"
	"github.com/levitated/levitated/pkg/storage"
)

// The index benchmarks hold 1M series (redgen, one sample each) in each
// store and time matcher selection, label names and label values, and, for
// levitated, reopening the store (the in-memory index is rebuilt at open).

const indexSeries = 1_000_000

var (
	indexOnce  = map[string]*sync.Once{"levitated": {}, "prometheus": {}}
	indexStore = map[string]benchStore{}
	indexDir   = map[string]string{}
)

func indexDB(b *testing.B, kind string) benchStore {
	indexOnce[kind].Do(func() {
		dir, err := os.MkdirTemp("", "levitated-bench-index-")
		if err != nil {
			b.Fatal(err)
		}
		db := openStore(b, kind, dir)
		series := redgen.Build(indexSeries)
		refs := make([]promstorage.SeriesRef, len(series))
		appendRound(b, db, series, refs, 0)
		indexStore[kind], indexDir[kind] = db, dir
	})
	return indexStore[kind]
}

func BenchmarkIndex(b *testing.B) {
	m := labels.MustNewMatcher
	cases := []struct {
		name string
		ms   []*labels.Matcher
	}{
		{"eq", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total"), m(labels.MatchEqual, "instance", "10.1.3.7:8080")}},
		{"eq-service", []*labels.Matcher{m(labels.MatchEqual, "__name__", "up"), m(labels.MatchEqual, "service", "checkout")}},
		{"neq", []*labels.Matcher{m(labels.MatchEqual, "__name__", "http_requests_total"), m(labels.MatchEqual, "service", "cart"), m(labels.MatchNotEqual, "code", "200")}},
		{"re", []*labels.Matcher{m(labels.MatchRegexp, "__name__", "http_request_duration_seconds_(sum|count)"), m(labels.MatchRegexp, "instance", "10\\.1\\.0\\..*")}},
		{"nre", []*labels.Matcher{m(labels.MatchEqual, "__name__", "node_cpu_seconds_total"), m(labels.MatchNotRegexp, "mode", "idle|system"), m(labels.MatchEqual, "service", "auth")}},
	}
	for _, kind := range storeKinds {
		for _, c := range cases {
			b.Run(fmt.Sprintf("store=%s/select=%s", kind, c.name), func(b *testing.B) {
				db := indexDB(b, kind)
				var n int
				for b.Loop() {
					q, err := db.Querier(t0-1, t0+1)
					if err != nil {
						b.Fatal(err)
					}
					ss := q.Select(context.Background(), false, nil, c.ms...)
					n = 0
					for ss.Next() {
						n++
					}
					if err := ss.Err(); err != nil {
						b.Fatal(err)
					}
					_ = q.Close()
				}
				b.ReportMetric(float64(n), "series")
			})
		}
		b.Run(fmt.Sprintf("store=%s/label-values=instance", kind), func(b *testing.B) {
			db := indexDB(b, kind)
			var n int
			for b.Loop() {
				q, _ := db.Querier(t0-1, t0+1)
				vs, _, err := q.LabelValues(context.Background(), "instance", nil)
				if err != nil {
					b.Fatal(err)
				}
				n = len(vs)
				_ = q.Close()
			}
			b.ReportMetric(float64(n), "values")
		})
		b.Run(fmt.Sprintf("store=%s/label-values-matched=route", kind), func(b *testing.B) {
			db := indexDB(b, kind)
			var n int
			for b.Loop() {
				q, _ := db.Querier(t0-1, t0+1)
				vs, _, err := q.LabelValues(context.Background(), "route", nil, labels.MustNewMatcher(labels.MatchEqual, "service", "search"))
				if err != nil {
					b.Fatal(err)
				}
				n = len(vs)
				_ = q.Close()
			}
			b.ReportMetric(float64(n), "values")
		})
		b.Run(fmt.Sprintf("store=%s/label-names", kind), func(b *testing.B) {
			db := indexDB(b, kind)
			for b.Loop() {
				q, _ := db.Querier(t0-1, t0+1)
				if _, _, err := q.LabelNames(context.Background(), nil); err != nil {
					b.Fatal(err)
				}
				_ = q.Close()
			}
		})
	}
}

// BenchmarkReopen1M closes and reopens a store of 1M series: the time a
// restart takes before serving.
func BenchmarkReopen1M(b *testing.B) {
	db := indexDB(b, "levitated").(*storage.DB)
	dir := indexDir["levitated"]
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		start := time.Now()
		d, err := storage.Open(dir, storage.Options{Logger: quietSlog()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/open")
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
	d, err := storage.Open(dir, storage.Options{Logger: quietSlog()})
	if err != nil {
		b.Fatal(err)
	}
	indexStore["levitated"] = d
}

func quietSlog() *slog.Logger { return slog.New(slog.DiscardHandler) }
