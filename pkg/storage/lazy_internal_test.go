package storage

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// lazyFixture is one series with two closed chunks in Pebble only and an
// open chunk in memory (also written to Pebble by the checkpoint).
type lazyFixture struct {
	db   *DB
	ls   labels.Labels
	base int64
	want []int64 // every sample's timestamp
}

func newLazyFixture(t *testing.T) *lazyFixture {
	t.Helper()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	f := &lazyFixture{db: db, ls: labels.FromStrings("__name__", "up", "job", "a"), base: 100 * chunkRange}
	for w := int64(0); w < 3; w++ {
		var ts []int64
		for i := int64(0); i < 10; i++ {
			ts = append(ts, f.base+w*chunkRange+i*15_000)
		}
		f.add(t, ts...)
	}
	if err := CheckpointForTest(db); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *lazyFixture) add(t *testing.T, ts ...int64) {
	t.Helper()
	app := f.db.AppenderV2(context.Background())
	for _, ts := range ts {
		if _, err := app.Append(0, f.ls, 0, ts, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	f.want = append(f.want, ts...)
}

// expand selects the series and keeps it, as Prometheus' engine does
// before it iterates.
func (f *lazyFixture) expand(t *testing.T) (promstorage.Querier, promstorage.Series) {
	t.Helper()
	q, err := f.db.Querier(f.base, f.base+10*chunkRange)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "a"))
	var set []promstorage.Series
	for ss.Next() {
		set = append(set, ss.At())
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	if len(set) != 1 {
		t.Fatalf("%d series, want 1", len(set))
	}
	return q, set[0]
}

func timestamps(t *testing.T, s promstorage.Series) []int64 {
	t.Helper()
	var got []int64
	it := s.Iterator(nil)
	for it.Next() != chunkenc.ValNone {
		ts, v := it.At()
		if v != float64(ts) {
			t.Fatalf("sample at %d: value %v", ts, v)
		}
		got = append(got, ts)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// Series lists a series' chunks without their data: chunks in Pebble and
// the open chunk are read when the series is iterated, so that a query over
// many series holds the chunks of one at a time.
func TestSeriesListsChunksWithoutData(t *testing.T) {
	f := newLazyFixture(t)
	th := f.db.tenantFor(context.Background())
	s := th.get(f.ls, f.ls.Hash())
	rh := f.db.newRangeHead(th, f.base, f.base+10*chunkRange)
	defer rh.close()
	var b labels.ScratchBuilder
	var metas []chunks.Meta
	if err := (*rangeIndex)(rh).Series(promstorage.SeriesRef(s.idx), &b, &metas); err != nil {
		t.Fatal(err)
	}
	if len(metas) != 3 {
		t.Fatalf("%d chunks listed, want 3", len(metas))
	}
	for i, m := range metas {
		if m.Chunk != nil || m.Ref&lazyChunkRef == 0 {
			t.Errorf("chunk %d (%d–%d) listed with its data (ref %x)", i, m.MinTime, m.MaxTime, uint64(m.Ref))
		}
	}
	// The open chunk, which the checkpoint wrote whole, is read from
	// Pebble's copy; once appended to, from memory.
	if metas[2].Ref&lazyHeadRef != 0 {
		t.Errorf("open chunk whole in Pebble listed as the head chunk (ref %x)", uint64(metas[2].Ref))
	}
	f.add(t, f.want[len(f.want)-1]+15_000)
	if err := (*rangeIndex)(rh).Series(promstorage.SeriesRef(s.idx), &b, &metas); err != nil {
		t.Fatal(err)
	}
	if len(metas) != 3 || metas[2].Ref&lazyHeadRef == 0 {
		t.Errorf("open chunk appended to since the checkpoint not listed as the head chunk (%d metas, last ref %x)", len(metas), uint64(metas[len(metas)-1].Ref))
	}
	if _, s := f.expand(t); !slices.Equal(timestamps(t, s), f.want) {
		t.Fatalf("read %v, want %v", timestamps(t, s), f.want)
	}
}

// A series selected, then appended to, then iterated reads what it would
// have read at the select: the open chunk is copied at iteration, but up to
// the time Series listed.
func TestIteratedSeriesEndsWhereSelected(t *testing.T) {
	f := newLazyFixture(t)
	want := slices.Clone(f.want)
	_, s := f.expand(t)
	last := f.want[len(f.want)-1]
	f.add(t, last+15_000, last+30_000) // same open chunk, in the query's range
	if got := timestamps(t, s); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v (the samples at the select)", got, want)
	}
	if _, s := f.expand(t); !slices.Equal(timestamps(t, s), f.want) {
		t.Fatalf("a new select read %v, want %v", timestamps(t, s), f.want)
	}
}

// An open chunk listed by Series that left memory before the iteration is
// read from Pebble (written whole by the checkpoint), up to the time listed.
func TestIteratedHeadChunkFromPebble(t *testing.T) {
	f := newLazyFixture(t)
	want := slices.Clone(f.want)
	_, s := f.expand(t)
	th := f.db.tenantFor(context.Background())
	ms := th.get(f.ls, f.ls.Hash())
	ms.mu.Lock()
	if n := len(ms.chunks); n != 1 || ms.chunks[0].isClosed() || int(ms.chunks[0].persisted) != ms.chunks[0].chunk.NumSamples() {
		ms.mu.Unlock()
		t.Fatalf("fixture: want one open chunk in memory, fully persisted; %d chunks", n)
	}
	ms.chunks = nil // as a drop would
	ms.mu.Unlock()
	if got := timestamps(t, s); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
}
