package bench

import (
	"context"
	"log/slog"
	"runtime"
	"testing"

	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/bench/redgen"
	"github.com/levitated/levitated/pkg/storage"
)

// BenchmarkHeapPerSeries reports the store's live heap per active series:
// 1M series (redgen) with 80 samples each at 15 s (20 minutes: one open
// chunk per series, as peer-bench's 1M × 20 m), measured after a full GC,
// before and after a flush (the checkpoint writes the open chunks to Pebble;
// they stay in memory). The benchmark's own series and references are made
// before the first measurement, so the figure is the store's.
func BenchmarkHeapPerSeries(b *testing.B) {
	const n, samples = 1_000_000, 80
	for b.Loop() {
		db, series, refs := redStore(b, n)
		heap := func() float64 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return float64(ms.HeapAlloc)
		}
		h0 := heap()
		for step := range int64(samples) {
			appendRound(b, db, series, refs, step)
		}
		h1 := heap()
		if err := db.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		h2 := heap()
		b.ReportMetric((h1-h0)/n, "heap-B/series")
		b.ReportMetric((h2-h0)/n, "flushed-heap-B/series")
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(series)
		runtime.KeepAlive(refs)
	}
}

// redStore opens an empty store with the series of redgen.Build(n) and
// room for their references.
func redStore(b *testing.B, n int) (*storage.DB, []*redgen.Series, []promstorage.SeriesRef) {
	b.Helper()
	db, err := storage.Open(b.TempDir(), storage.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return db, redgen.Build(n), make([]promstorage.SeriesRef, n)
}
