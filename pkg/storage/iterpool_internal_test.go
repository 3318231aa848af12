package storage

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestChunkIterPool: a reader takes the Pebble iterator the last reader of
// the partition closed, and reads what a new one would: after a checkpoint
// wrote chunks that then left memory, a spill, and a retention pass, the
// pooled iterator is not taken (it would not see them); a flush or a
// compaction closes the idle ones (they pin what it replaced); Close
// leaves none open.
func TestChunkIterPool(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), Retention: 365 * 24 * time.Hour, Registerer: reg})
	require.NoError(t, err)
	closed := false
	defer func() {
		if !closed {
			_ = db.Close()
		}
	}()
	ls := labels.FromStrings("__name__", "up", "job", "a")
	base := int64(100 * chunkRange)
	next := base
	add := func(n int) {
		t.Helper()
		app := db.AppenderV2(ctx)
		for range n {
			_, err := app.Append(0, ls, 0, next, float64(next), nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
			next += 60_000
		}
		require.NoError(t, app.Commit())
	}
	made, reused := func() int64 { return db.iters.made.Load() }, func() int64 { return db.iters.reused.Load() }
	read := func() int { return countSamples(t, db, base, next) }

	add(300) // 5 h: two closed chunks and an open one
	require.NoError(t, CheckpointForTest(db))
	require.Equal(t, 300, read())
	m0 := made()
	require.Positive(t, m0, "the chunks that left memory are read from Pebble")
	require.Equal(t, 300, read())
	require.Equal(t, m0, made(), "the second read takes the first one's iterator")
	require.Positive(t, reused())
	exposed := func(iterator string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "levitated_storage_chunk_iterators_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == iterator {
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("levitated_storage_chunk_iterators_total{iterator=%q} not exposed", iterator)
		return 0
	}
	require.Equal(t, float64(made()), exposed("made"))
	require.Equal(t, float64(reused()), exposed("reused"))

	// New chunks, written and then dropped from memory: only Pebble has
	// them, and only an iterator made after they were written sees them.
	add(300)
	require.NoError(t, CheckpointForTest(db))
	require.Equal(t, 600, read(), "the chunks the checkpoint wrote and memory dropped")
	require.Greater(t, made(), m0, "the iterator made before the checkpoint is not taken")

	add(240)
	m1 := made()
	require.NoError(t, SpillForTest(db))
	require.Equal(t, 840, read(), "the chunks the spill wrote and memory dropped")
	require.Greater(t, made(), m1)

	// Pebble's flush of its memtable (and the compactions it starts), and
	// a compaction, make the idle iterators stale and close them.
	idle := func() int {
		db.iters.mu.Lock()
		defer db.iters.mu.Unlock()
		return len(db.iters.idle)
	}
	total := 840
	for _, replace := range []func() error{
		db.pdb.Flush,
		func() error { return db.pdb.Compact(ctx, []byte{0}, []byte{0xff, 0xff, 0xff, 0xff, 0xff}, true) },
	} {
		add(1) // a write-ahead record in the memtable
		total++
		require.Equal(t, total, read()) // the read leaves its iterator idle
		require.Positive(t, idle())
		require.NoError(t, replace())
		require.Eventually(t, func() bool { return idle() == 0 }, 5*time.Second, 5*time.Millisecond)
		require.Equal(t, total, read())
	}

	// Retention: the days before the cut are deleted from Pebble; a
	// reader must not take an iterator that still sees them.
	require.Equal(t, total, read())
	gen := db.iters.gen.Load()
	require.NoError(t, RetentionForTest(db))
	require.Greater(t, db.iters.gen.Load(), gen, "a retention pass makes the pooled iterators stale")

	require.Equal(t, total, read())
	closed = true
	require.NoError(t, db.Close(), "no iterator is left open")
}
