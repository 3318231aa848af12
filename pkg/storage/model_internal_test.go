package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// TestRandomOpsAgainstModel drives the store with random appends (in order,
// out of order within the window, exact resends, conflicting values),
// checkpoints, memory reclamation, reopens and reads, and checks every read
// against a plain map of what was acknowledged. Reads also run on a querier
// opened before a checkpoint and reclamation. Chunks are small, time jumps
// cross chunk ranges and days, so that reads mix chunks in memory, chunks
// in Pebble and out-of-order data.
func TestRandomOpsAgainstModel(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runModel(t, uint64(seed)) })
	}
}

type modelStore struct {
	t    *testing.T
	rng  *rand.Rand
	dir  string
	opts Options
	db   *DB

	hists  bool // the last two series hold native histograms
	series []labels.Labels
	data   []map[int64]float64 // acknowledged samples per series
	lastT  []int64
}

func runModel(t *testing.T, seed uint64) {
	m := &modelStore{
		t:     t,
		rng:   rand.New(rand.NewPCG(seed, seed*7919)),
		dir:   t.TempDir(),
		opts:  Options{Logger: slog.New(slog.DiscardHandler), SamplesPerChunk: 8},
		hists: true,
	}
	m.open()
	defer func() { _ = m.db.Close() }()
	for i := 0; i < 6; i++ {
		m.series = append(m.series, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)))
		m.data = append(m.data, map[int64]float64{})
		m.lastT = append(m.lastT, math.MinInt64)
	}
	now := int64(1_700_000_000_000) + m.rng.Int64N(dayMillis)
	for op := 0; op < 300; op++ {
		switch r := m.rng.IntN(100); {
		case r < 50:
			now += m.stepFor()
			m.appendBatch(now)
		case r < 62:
			m.checkpointAndReclaim()
		case r < 70:
			m.readDuringCheckpoint(now)
		case r < 73:
			m.reopen()
		default:
			m.readRandom(now)
		}
	}
	for i := range m.series {
		if len(m.data[i]) < 20 {
			t.Fatalf("series %d (%v) holds %d samples: the run exercised too little", i, m.kind(i), len(m.data[i]))
		}
	}
	m.checkpointAndReclaim()
	m.check(math.MinInt64, math.MaxInt64, "final")
	m.reopen()
	m.check(math.MinInt64, math.MaxInt64, "final, reopened")
}

// stepFor is how far time moves: mostly a scrape interval, sometimes across
// a chunk range or a day.
func (m *modelStore) stepFor() int64 {
	switch r := m.rng.IntN(100); {
	case r < 85:
		return 15_000
	case r < 95:
		return chunkRange/2 + m.rng.Int64N(chunkRange)
	default:
		return dayMillis/2 + m.rng.Int64N(dayMillis)
	}
}

func (m *modelStore) open() {
	db, err := Open(m.dir, m.opts)
	if err != nil {
		m.t.Fatal(err)
	}
	m.db = db
}

func (m *modelStore) reopen() {
	if err := m.db.Close(); err != nil {
		m.t.Fatal(err)
	}
	m.open()
}

func (m *modelStore) checkpointAndReclaim() {
	m.checkpointOrSpill()
	if m.rng.IntN(2) == 0 {
		m.db.reclaim()
	}
}

// checkpointOrSpill runs a checkpoint, or a spill of closed chunks (written
// and made droppable with their write-ahead records kept).
func (m *modelStore) checkpointOrSpill() {
	write := m.db.checkpoint
	if m.rng.IntN(3) == 0 {
		write = m.db.spillClosed
	}
	if err := write(context.Background()); err != nil {
		m.t.Fatal(err)
	}
}

// appendBatch appends to a random subset of the series at or around now and
// records what Commit acknowledged.
func (m *modelStore) appendBatch(now int64) {
	ctx := context.Background()
	app := m.db.AppenderV2(ctx)
	type added struct {
		i int
		t int64
		v float64
	}
	var pending []added
	for i, ls := range m.series {
		if m.rng.IntN(3) == 0 {
			continue
		}
		ts, v := now, float64(m.rng.IntN(1000))/4
		existing, had := m.data[i][ts]
		switch r := m.rng.IntN(100); {
		case r < 10 && m.lastT[i] != math.MinInt64: // out of order, maybe too old
			ts = m.lastT[i] - m.rng.Int64N(20*60_000)
			existing, had = m.data[i][ts]
		case r < 15 && m.lastT[i] != math.MinInt64: // resend of the newest
			ts = m.lastT[i]
			existing, had = m.data[i][ts]
			v = existing
		case r < 18 && m.lastT[i] != math.MinInt64: // another value at the newest
			ts = m.lastT[i]
			existing, had = m.data[i][ts]
			v = existing + 1
		}
		for _, p := range pending {
			if p.i == i && p.t == ts {
				had, existing = true, p.v
			}
		}
		var h *histogram.Histogram
		var fh *histogram.FloatHistogram
		switch m.kind(i) {
		case chunkenc.ValHistogram:
			h = histFor(v)
		case chunkenc.ValFloatHistogram:
			fh = histFor(v).ToFloat(nil)
		}
		_, err := app.Append(0, ls, 0, ts, v, h, fh, promstorage.AOptions{})
		window := m.db.opts.OutOfOrderWindow.Milliseconds()
		switch {
		case err == nil:
			if had && math.Float64bits(existing) != math.Float64bits(v) {
				m.t.Fatalf("series %d: accepted %v at %d over %v", i, v, ts, existing)
			}
			pending = append(pending, added{i, ts, v})
		case errors.Is(err, promstorage.ErrDuplicateSampleForTimestamp):
			if !had || math.Float64bits(existing) == math.Float64bits(v) {
				m.t.Fatalf("series %d: %v, but no other value at %d", i, err, ts)
			}
		case errors.Is(err, promstorage.ErrOutOfOrderSample), errors.Is(err, promstorage.ErrTooOldSample):
			if ts >= m.maxT()-window {
				m.t.Fatalf("series %d: %v at %d (newest %d)", i, err, ts, m.maxT())
			}
		default:
			m.t.Fatalf("series %d: %v", i, err)
		}
	}
	if err := app.Commit(); err != nil {
		m.t.Fatal(err)
	}
	for _, p := range pending {
		m.data[p.i][p.t] = p.v
		m.lastT[p.i] = max(m.lastT[p.i], p.t)
	}
}

// kind is the value type of series i: the last two hold native
// histograms, integer and float.
func (m *modelStore) kind(i int) chunkenc.ValueType {
	switch {
	case m.hists && i == len(m.series)-2:
		return chunkenc.ValHistogram
	case m.hists && i == len(m.series)-1:
		return chunkenc.ValFloatHistogram
	}
	return chunkenc.ValFloat
}

// maxT is the newest committed sample of any series: as in Prometheus'
// head, the out-of-order window is counted back from it.
func (m *modelStore) maxT() int64 { return slices.Max(m.lastT) }

func (m *modelStore) randomRange(now int64) (int64, int64) {
	lo := now - m.rng.Int64N(3*dayMillis)
	hi := lo + m.rng.Int64N(3*dayMillis)
	if m.rng.IntN(5) == 0 {
		lo = math.MinInt64
	}
	return lo, hi
}

func (m *modelStore) readRandom(now int64) {
	lo, hi := m.randomRange(now)
	m.check(lo, hi, "read")
}

// readDuringCheckpoint opens a querier, lets a checkpoint and reclamation
// run, and then reads through it.
func (m *modelStore) readDuringCheckpoint(now int64) {
	lo, hi := m.randomRange(now)
	q, err := m.db.Querier(lo, hi)
	if err != nil {
		m.t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	// The rangeHead exists once Select ran; chunks it may need must stay.
	m.checkpointOrSpill()
	m.db.reclaim()
	m.compare(collect(m.t, ss), lo, hi, "read across a checkpoint")
}

func (m *modelStore) check(lo, hi int64, what string) {
	q, err := m.db.Querier(lo, hi)
	if err != nil {
		m.t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	m.compare(collect(m.t, ss), lo, hi, what)
	m.checkSeriesOnly(q, lo, hi, what)
}

// checkSeriesOnly checks that a select with the "series" hint (the series
// API's: hasChunk, no chunk read) lists the series that a select of the
// same hint range without it lists (every chunk read, then filtered by
// Prometheus' block querier), for the querier's range and, in a random
// run, a range inside or across it and one that may not overlap it.
func (m *modelStore) checkSeriesOnly(q promstorage.Querier, lo, hi int64, what string) {
	m.t.Helper()
	ms := labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")
	ranges := [][2]int64{{lo, hi}}
	if m.rng != nil && len(m.lastT) > 0 {
		a, b := m.randomRange(m.maxT())
		ranges = append(ranges, [2]int64{max(lo, hi-m.rng.Int64N(dayMillis)), hi}, [2]int64{a, b})
	}
	for _, r := range ranges {
		for _, sorted := range []bool{false, true} {
			names := func(func_ string) []string {
				ss := q.Select(context.Background(), sorted, &promstorage.SelectHints{Start: r[0], End: r[1], Func: func_}, ms)
				var out []string
				for ss.Next() {
					out = append(out, ss.At().Labels().String())
				}
				if err := ss.Err(); err != nil {
					m.t.Fatal(err)
				}
				return out
			}
			want, got := names(""), names("series")
			if !sorted {
				slices.Sort(want)
				slices.Sort(got)
			}
			if !slices.Equal(got, want) {
				m.t.Fatalf("%s [%d, %d], series select over [%d, %d] (sorted %v): got %v, want %v", what, lo, hi, r[0], r[1], sorted, got, want)
			}
		}
	}
}

// tv is a sample as the model keeps it: a float, or the seed of a native
// histogram (histFor) of kind k.
type tv struct {
	t int64
	v float64
	k chunkenc.ValueType
}

// histFor is the native histogram a model value stands for: its count is
// 4v, so a read histogram gives its value back (seedOf), and it must then
// equal histFor of that value exactly.
func histFor(v float64) *histogram.Histogram {
	n := uint64(v * 4)
	return &histogram.Histogram{
		Count:           n + 3,
		ZeroCount:       1,
		ZeroThreshold:   0.001,
		Sum:             v * 1.5,
		Schema:          0,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{int64(n), -int64(n) + 2}, // n, 2
	}
}

func seedOf(count float64) float64 { return (count - 3) / 4 }

func collect(t *testing.T, ss promstorage.SeriesSet) map[string][]tv {
	out := map[string][]tv{}
	var it chunkenc.Iterator
	for ss.Next() {
		it = ss.At().Iterator(it)
		var pts []tv
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				ts, v := it.At()
				pts = append(pts, tv{ts, v, vt})
			case chunkenc.ValHistogram:
				ts, h := it.AtHistogram(nil)
				v := seedOf(float64(h.Count))
				if !h.Equals(histFor(v)) {
					t.Fatalf("%s at %d: histogram %s, not %s", ss.At().Labels(), ts, h, histFor(v))
				}
				pts = append(pts, tv{ts, v, vt})
			case chunkenc.ValFloatHistogram:
				ts, fh := it.AtFloatHistogram(nil)
				v := seedOf(fh.Count)
				if !fh.Equals(histFor(v).ToFloat(nil)) {
					t.Fatalf("%s at %d: float histogram %s, not %s", ss.At().Labels(), ts, fh, histFor(v).ToFloat(nil))
				}
				pts = append(pts, tv{ts, v, vt})
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out[ss.At().Labels().String()] = pts
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (m *modelStore) compare(got map[string][]tv, lo, hi int64, what string) {
	m.t.Helper()
	for i, ls := range m.series {
		var want []tv
		for _, ts := range slices.Sorted(maps.Keys(m.data[i])) {
			if ts >= lo && ts <= hi {
				want = append(want, tv{ts, m.data[i][ts], m.kind(i)})
			}
		}
		g := got[ls.String()]
		if !slices.Equal(g, want) {
			m.t.Fatalf("%s [%d, %d], series %s: got %d samples, want %d\ngot  %v\nwant %v", what, lo, hi, ls, len(g), len(want), g, want)
		}
		delete(got, ls.String())
	}
	if len(got) > 0 {
		m.t.Fatalf("%s: unexpected series %v", what, slices.Collect(maps.Keys(got)))
	}
}
