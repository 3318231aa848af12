package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/levitated/levitated/bench/redgen"
	"github.com/levitated/levitated/pkg/storage"
)

// The storage benchmarks run each case over levitated's store and over
// Prometheus' TSDB (tsdb.Open in a temp dir) in the same run, so every
// figure can be read as a ratio. Note that Prometheus' WAL does not fsync
// a commit; levitated's does.

const (
	scrapeInterval = 15_000 // ms
	batchSize      = 10_000 // samples per commit, as a remote-write request
	writers        = 4      // concurrent appenders, as remote-write shards
	t0             = int64(1_700_000_000_000)
)

type benchStore interface {
	promstorage.AppendableV2
	promstorage.Queryable
	Close() error
}

func openStore(tb testing.TB, kind, dir string) benchStore {
	tb.Helper()
	switch kind {
	case "levitated":
		db, err := storage.Open(dir, storage.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			tb.Fatal(err)
		}
		return db
	case "prometheus":
		opts := tsdb.DefaultOptions()
		opts.OutOfOrderTimeWindow = (10 * time.Minute).Milliseconds()
		db, err := tsdb.Open(dir, slog.New(slog.DiscardHandler), nil, opts, nil)
		if err != nil {
			tb.Fatal(err)
		}
		return db
	}
	tb.Fatalf("unknown store %q", kind)
	return nil
}

var storeKinds = []string{"levitated", "prometheus"}

// appendRound appends one sample of every series at step, from writers
// goroutines each committing batches of batchSize samples.
func appendRound(tb testing.TB, db benchStore, series []*redgen.Series, refs []promstorage.SeriesRef, step int64) {
	var wg sync.WaitGroup
	per := (len(series) + writers - 1) / writers
	for w := 0; w < writers; w++ {
		lo, hi := w*per, min((w+1)*per, len(series))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			t := t0 + step*scrapeInterval
			for b := lo; b < hi; b += batchSize {
				app := db.AppenderV2(ctx)
				for i := b; i < min(b+batchSize, hi); i++ {
					ref, err := app.Append(refs[i], series[i].Labels, 0, t, series[i].Next(step), nil, nil, promstorage.AOptions{})
					if err != nil {
						tb.Error(err)
						_ = app.Rollback()
						return
					}
					refs[i] = ref
				}
				if err := app.Commit(); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkAppend measures steady-state ingest: one op appends one sample
// to every series (after a first round that creates them).
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		for _, kind := range storeKinds {
			b.Run(fmt.Sprintf("store=%s/series=%d", kind, n), func(b *testing.B) {
				db := openStore(b, kind, b.TempDir())
				defer db.Close()
				series := redgen.Build(n)
				refs := make([]promstorage.SeriesRef, n)
				appendRound(b, db, series, refs, 0)
				step := int64(1)
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				cpu0 := cpuNanos()
				b.ReportAllocs()
				for b.Loop() {
					appendRound(b, db, series, refs, step)
					step++
				}
				cpu := cpuNanos() - cpu0
				runtime.ReadMemStats(&ms1)
				samples := float64(n) * float64(step-1)
				b.ReportMetric(samples/b.Elapsed().Seconds(), "samples/s")
				b.ReportMetric(float64(cpu)/samples, "cpu-ns/sample")
				b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/samples, "allocs/sample")
			})
		}
	}
}

func dirSize(tb testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by a compaction meanwhile
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkDiskBytesPerSample ingests 2h of 15s samples of 10k series and
// reports the bytes on disk per sample once chunks are written: levitated
// after Flush (checkpoint and full compaction), Prometheus as the block its
// snapshot writes (what it settles at after compaction).
func BenchmarkDiskBytesPerSample(b *testing.B) {
	const n, steps = 10_000, 480
	for _, kind := range storeKinds {
		b.Run("store="+kind, func(b *testing.B) {
			for b.Loop() {
				dir := b.TempDir()
				db := openStore(b, kind, dir)
				series := redgen.Build(n)
				refs := make([]promstorage.SeriesRef, n)
				for step := int64(0); step < steps; step++ {
					appendRound(b, db, series, refs, step)
				}
				var size int64
				switch d := db.(type) {
				case *storage.DB:
					if err := d.Flush(context.Background()); err != nil {
						b.Fatal(err)
					}
					if err := d.Close(); err != nil {
						b.Fatal(err)
					}
					size = dirSize(b, dir)
				case *tsdb.DB:
					snap := b.TempDir()
					if err := d.Snapshot(snap, true); err != nil {
						b.Fatal(err)
					}
					size = dirSize(b, snap)
				}
				_ = db.Close()
				b.ReportMetric(float64(size)/float64(n*steps), "bytes/sample")
			}
		})
	}
}

var (
	selectOnce  = map[string]*sync.Once{"levitated": {}, "prometheus": {}}
	selectStore = map[string]benchStore{}
	// selectDirs are the stores BenchmarkSelect2h keeps across its runs;
	// TestMain removes them.
	selectDirs []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, db := range selectStore {
		_ = db.Close()
	}
	for _, dir := range selectDirs {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// BenchmarkSelect2h selects every series of a 100k-series store over 2h and
// iterates every sample.
func BenchmarkSelect2h(b *testing.B) {
	n := selectSeries()
	for _, kind := range storeKinds {
		b.Run(fmt.Sprintf("store=%s/series=%d", kind, n), func(b *testing.B) {
			db := selectStoreFor(b, kind, n)
			m := labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")
			var total int
			for b.Loop() {
				q, err := db.Querier(t0, t0+selectSteps*scrapeInterval)
				if err != nil {
					b.Fatal(err)
				}
				ss := q.Select(context.Background(), false, nil, m)
				var it chunkenc.Iterator
				total = 0
				for ss.Next() {
					it = ss.At().Iterator(it)
					for it.Next() != chunkenc.ValNone {
						total++
					}
					if err := it.Err(); err != nil {
						b.Fatalf("%s: %v", ss.At().Labels(), err)
					}
				}
				if err := ss.Err(); err != nil {
					b.Fatal(err)
				}
				_ = q.Close()
			}
			if total != n*selectSteps {
				b.Fatalf("iterated %d samples, want %d", total, n*selectSteps)
			}
			b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkSelect2hExpanded reads as Prometheus' engine does: the series
// set of every series over 2h is expanded first, then each series is
// iterated. held-B/series is the live heap the expanded set holds (after a
// collection, against before the select): what a query over all series
// keeps while the engine evaluates.
func BenchmarkSelect2hExpanded(b *testing.B) {
	n := selectSeries()
	for _, kind := range storeKinds {
		b.Run(fmt.Sprintf("store=%s/series=%d", kind, n), func(b *testing.B) {
			db := selectStoreFor(b, kind, n)
			m := labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")
			var total int
			var held float64
			for b.Loop() {
				b.StopTimer()
				before := liveHeap()
				b.StartTimer()
				q, err := db.Querier(t0, t0+selectSteps*scrapeInterval)
				if err != nil {
					b.Fatal(err)
				}
				ss := q.Select(context.Background(), false, nil, m)
				var set []promstorage.Series
				for ss.Next() {
					set = append(set, ss.At())
				}
				if err := ss.Err(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				held += float64(liveHeap()-before) / float64(n)
				b.StartTimer()
				var it chunkenc.Iterator
				total = 0
				for _, s := range set {
					it = s.Iterator(it)
					for it.Next() != chunkenc.ValNone {
						total++
					}
					if err := it.Err(); err != nil {
						b.Fatalf("%s: %v", s.Labels(), err)
					}
				}
				_ = q.Close()
			}
			if total != n*selectSteps {
				b.Fatalf("iterated %d samples, want %d", total, n*selectSteps)
			}
			b.ReportMetric(held/float64(b.N), "held-B/series")
		})
	}
}

// liveHeap is the heap in use after a collection (outside the timing).
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

const selectSteps = 480

func selectSeries() int {
	n := 100_000
	if s := os.Getenv("LEVITATED_BENCH_SERIES"); s != "" {
		_, _ = fmt.Sscan(s, &n)
	}
	return n
}

// selectStoreFor returns a store of n series × selectSteps samples, built
// once per kind and kept across benchmarks.
func selectStoreFor(b *testing.B, kind string, n int) benchStore {
	selectOnce[kind].Do(func() {
		dir, err := os.MkdirTemp("", "levitated-bench-select-")
		if err != nil {
			b.Fatal(err)
		}
		selectDirs = append(selectDirs, dir)
		db := openStore(b, kind, dir)
		series := redgen.Build(n)
		refs := make([]promstorage.SeriesRef, n)
		for step := int64(0); step < selectSteps; step++ {
			appendRound(b, db, series, refs, step)
		}
		if d, ok := db.(*storage.DB); ok {
			if err := d.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		selectStore[kind] = db
	})
	return selectStore[kind]
}
