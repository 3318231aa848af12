package storage

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// A chunk written whole by one checkpoint and closed only afterwards (the
// next sample falls in the next chunk range) must still leave memory: the
// next checkpoint has nothing to write for it, but makes it droppable.
func TestChunkClosedAfterCheckpointIsDropped(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ls := labels.FromStrings("__name__", "up", "job", "a")
	base := int64(100 * chunkRange)
	add := func(ts ...int64) {
		t.Helper()
		app := db.AppenderV2(ctx)
		for _, ts := range ts {
			if _, err := app.Append(0, ls, 0, ts, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint := func() {
		t.Helper()
		if err := db.checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		db.reclaim()
	}
	window := func(w int64) []int64 {
		var ts []int64
		for i := int64(0); i < 10; i++ {
			ts = append(ts, base+w*chunkRange+i*15_000)
		}
		return ts
	}
	a, b := window(0), window(1)
	add(a...)
	checkpoint()             // chunk a is open: written whole, and stays
	add(b...)                // closes a
	add(base + 2*chunkRange) // closes b
	checkpoint()             // writes b; a has nothing to write, but may go too
	want := len(a) + len(b) + 1

	// Reading from the start of a must find b in Pebble, whatever of a is
	// still in memory.
	if got := countSamples(t, db, base, base+3*chunkRange); got != want {
		t.Fatalf("read %d samples, want %d", got, want)
	}
	th := db.tenantFor(ctx)
	s := th.get(ls, ls.Hash())
	s.mu.Lock()
	n := len(s.chunks)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d chunks in memory after the second checkpoint, want 1 (the open one)", n)
	}
	if got := countSamples(t, db, base, base+3*chunkRange); got != want {
		t.Fatalf("read %d samples after the drop, want %d", got, want)
	}
}

func countSamples(t *testing.T, db *DB, mint, maxt int64) int {
	t.Helper()
	q, err := db.Querier(mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var got int
	for _, pts := range collect(t, q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "a"))) {
		got += len(pts)
	}
	return got
}

// Selects of one querier may run in parallel (they share its Pebble
// iterators); each must read its own series whole.
func TestConcurrentSelectsOfOneQuerier(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const nSeries, nSamples = 64, 200
	app := db.AppenderV2(ctx)
	for i := 0; i < nSeries; i++ {
		ls := labels.FromStrings("__name__", "m", "i", strconv.Itoa(i))
		for j := int64(0); j < nSamples; j++ {
			if _, err := app.Append(0, ls, 0, j*60_000, float64(i), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(ctx); err != nil { // reads go to Pebble
		t.Fatal(err)
	}
	q, err := db.Querier(0, nSamples*60_000)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var wg sync.WaitGroup
	for i := 0; i < nSeries; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ss := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "i", strconv.Itoa(i)))
			n := 0
			for ss.Next() {
				it := ss.At().Iterator(nil)
				for it.Next() != chunkenc.ValNone {
					if _, v := it.At(); v != float64(i) {
						t.Errorf("series %d: value %v", i, v)
						return
					}
					n++
				}
				if err := it.Err(); err != nil {
					t.Error(err)
				}
			}
			if err := ss.Err(); err != nil {
				t.Error(err)
			}
			if n != nSamples {
				t.Errorf("series %d: %d samples, want %d", i, n, nSamples)
			}
		}()
	}
	wg.Wait()
}

// A spill writes the closed chunks and lets them leave memory, keeps the
// open chunk and the write-ahead records (no checkpoint), and reads still
// find every sample, also after a reopen.
func TestSpillDropsClosedChunksKeepsRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler), SamplesPerChunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	ls := labels.FromStrings("__name__", "up", "job", "a")
	base := int64(100 * chunkRange)
	const n = 50 // chunks of 8 (cut at 16 at the latest): several close
	for i := int64(0); i < n; i++ {
		app := db.AppenderV2(ctx)
		if _, err := app.Append(0, ls, 0, base+i*15_000, float64(i), nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	walBefore := db.walBytes.Load()
	th := db.tenantFor(ctx)
	s := th.get(ls, ls.Hash())
	s.mu.Lock()
	before := len(s.chunks)
	s.mu.Unlock()
	if before < 3 {
		t.Fatalf("%d chunks before the spill: the test needs closed ones", before)
	}
	if err := db.spillClosed(ctx); err != nil {
		t.Fatal(err)
	}
	db.reclaim()
	s.mu.Lock()
	after, open := len(s.chunks), s.headChunk() != nil
	s.mu.Unlock()
	if after != 1 || !open {
		t.Fatalf("%d chunks in memory after the spill (open head: %v), want only the open one", after, open)
	}
	if got := db.walBytes.Load(); got != walBefore {
		t.Fatalf("write-ahead bytes %d after the spill, want %d: a spill is no checkpoint", got, walBefore)
	}
	if got := countSamples(t, db, base, base+n*15_000); got != n {
		t.Fatalf("read %d samples after the spill, want %d", got, n)
	}
	// Close checkpoints (nothing left to write but the open chunk); a
	// crash before it, whose replay meets the spilled chunks, is
	// TestCrashRecovery's.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Options{Logger: slog.New(slog.DiscardHandler), SamplesPerChunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := countSamples(t, db, base, base+n*15_000); got != n {
		t.Fatalf("read %d samples after reopening, want %d", got, n)
	}
}

// A checkpoint that fails after writing chunks marks none of them
// persisted (nor droppable): the next one writes them again, whole.
func TestFailedCheckpointPersistsNothing(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), CallerRunsBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	base := int64(100 * chunkRange)
	var all []labels.Labels
	app := db.AppenderV2(ctx)
	for i := range 200 {
		ls := labels.FromStrings("__name__", "up", "i", strconv.Itoa(i), "job", "a")
		all = append(all, ls)
		// A closed chunk in the first range, the open one in the next.
		for _, ts := range []int64{base, base + 15_000, base + chunkRange, base + chunkRange + 15_000} {
			if _, err := app.Append(0, ls, 0, ts, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	state := func() (persisted, writing, droppable int) {
		th := db.tenantFor(ctx)
		for _, ls := range all {
			s := th.get(ls, ls.Hash())
			s.mu.Lock()
			for _, c := range s.chunks {
				persisted += int(c.persisted)
				writing += int(c.writing)
				if c.droppable() {
					droppable++
				}
			}
			s.mu.Unlock()
		}
		return persisted, writing, droppable
	}

	// A commit whose records are not in Pebble yet holds the checkpoint's
	// final batch until its context ends.
	db.applyMu.Lock()
	db.seq++
	held := db.seq
	db.applyMu.Unlock()
	db.unwritten.begin(held)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = db.checkpoint(cctx)
	cancel()
	p, w, d := state()
	db.unwritten.end(held)
	if err == nil {
		t.Fatal("checkpoint succeeded while a commit's records were unwritten")
	}
	if p != 0 || w != 0 || d != 0 {
		t.Fatalf("after a failed checkpoint: %d samples persisted, %d being written, %d chunks droppable; want none", p, w, d)
	}

	if err := db.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if p, w, d := state(); p != 4*len(all) || w != 0 || d != len(all) {
		t.Fatalf("after a checkpoint: %d samples persisted, %d being written, %d chunks droppable; want %d, 0, %d", p, w, d, 4*len(all), len(all))
	}
	db.reclaim() // the closed chunks are read from Pebble now
	if got := countSamples(t, db, base, base+2*chunkRange); got != 4*len(all) {
		t.Fatalf("read %d samples, want %d", got, 4*len(all))
	}
}
