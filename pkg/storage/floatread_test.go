package storage_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
)

// floatsAppender is what pkg/rollup asks of a series.
type floatsAppender interface {
	AppendFloats(ts []int64, fs []float64, mint, maxt int64, dropStale bool) ([]int64, []float64, bool, error)
}

const fr0 = int64(1_700_000_000_000)

// fillFloatRead writes series whose chunks take every path of
// AppendFloats: regular and jittered timestamps, integer, decimal, float,
// NaN and stale values, a run of staleness markers, and a series that
// starts late.
func fillFloatRead(t *testing.T, db *storage.DB, from, to int64, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 1))
	stale := math.Float64frombits(value.StaleNaN)
	app := db.AppenderV2(ctx)
	for i := range 12 {
		lset := labels.FromStrings("__name__", "fr", "i", fmt.Sprint(i))
		v := float64(i * 1000)
		for ts := from + int64(i)*1000; ts < to; {
			f := v
			switch i % 4 {
			case 0: // a counter on a 15 s grid
				v += float64(rng.IntN(50))
			case 1: // decimals with jitter
				v = float64(rng.IntN(10000)) / 100
			case 2: // floats, NaN and staleness markers
				v = rng.NormFloat64()
				switch rng.IntN(20) {
				case 0:
					f = math.NaN()
				case 1, 2:
					f = stale
				}
			case 3: // constant, then a run of staleness markers
				if (ts/60_000)%40 > 30 {
					f = stale
				}
			}
			if i == 7 && ts < from+3600_000 {
				f = math.NaN() // no: starts late
				ts += 15_000
				continue
			}
			_, err := app.Append(0, lset, 0, ts, f, nil, nil, promstorage.AOptions{})
			require.NoError(t, err)
			ts += 15_000
			if i%4 == 1 {
				ts += rng.Int64N(400) - 200
			}
		}
	}
	require.NoError(t, app.Commit())
}

// checkAppendFloats compares, for every series and many ranges (around
// chunk boundaries too), the samples AppendFloats appends with those the
// series' iterator returns; it returns how many series it read in bulk and
// how many not.
func checkAppendFloats(t *testing.T, db *storage.DB, from, to int64) (bulk, not int) {
	t.Helper()
	ctx := context.Background()
	// Range ends around chunk boundaries.
	cq, err := db.ChunkQuerier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	ends := []int64{from - 1, from, from + 7_000, from + 3600_000 + 1, to, to + 1, math.MinInt64, math.MaxInt64}
	cs := cq.Select(ctx, false, nil, metric("fr"))
	for cs.Next() {
		it := cs.At().Iterator(nil)
		for it.Next() {
			m := it.At()
			ends = append(ends, m.MinTime-1, m.MinTime, m.MinTime+1, m.MaxTime-1, m.MaxTime, m.MaxTime+1)
		}
	}
	require.NoError(t, cs.Err())
	require.NoError(t, cq.Close())
	slices.Sort(ends)
	ends = slices.Compact(ends)
	rng := rand.New(rand.NewPCG(9, 9))
	for range 60 {
		mint := ends[rng.IntN(len(ends))]
		maxt := ends[rng.IntN(len(ends))]
		if mint > maxt {
			mint, maxt = maxt, mint
		}
		q, err := db.Querier(mint, maxt)
		require.NoError(t, err)
		ss := q.Select(ctx, false, &promstorage.SelectHints{Start: mint, End: maxt}, metric("fr"))
		var it chunkenc.Iterator
		for ss.Next() {
			s := ss.At()
			for _, drop := range []bool{false, true} {
				what := fmt.Sprintf("%s [%d, %d] drop=%v", s.Labels(), mint, maxt, drop)
				fa, ok := s.(floatsAppender)
				require.True(t, ok, "a series of levitated's store has AppendFloats")
				gotT, gotF, ok, err := fa.AppendFloats([]int64{-1}, []float64{-1}, mint, maxt, drop)
				require.NoError(t, err, what)
				if !ok {
					require.Equal(t, []int64{-1}, gotT, what)
					not++
					continue
				}
				bulk++
				var wantT []int64
				var wantF []float64
				it = s.Iterator(it)
				for vt := it.Seek(mint); vt != chunkenc.ValNone; vt = it.Next() {
					require.Equal(t, chunkenc.ValFloat, vt)
					ts, f := it.At()
					if ts < mint || drop && value.IsStaleNaN(f) {
						continue
					}
					if ts > maxt {
						break
					}
					wantT = append(wantT, ts)
					wantF = append(wantF, f)
				}
				require.NoError(t, it.Err())
				require.Equal(t, int64(-1), gotT[0], what)
				require.Equal(t, len(wantT), len(gotT)-1, what)
				for i := range wantT {
					require.Equal(t, wantT[i], gotT[i+1], what)
					require.Equal(t, math.Float64bits(wantF[i]), math.Float64bits(gotF[i+1]), "%s at %d", what, wantT[i])
				}
			}
		}
		require.NoError(t, ss.Err())
		require.NoError(t, q.Close())
	}
	return bulk, not
}

// iterSamples is what it returns from mint on, up to maxt, as "t:bits".
func iterSamples(t *testing.T, it chunkenc.Iterator, mint, maxt int64) []string {
	t.Helper()
	var out []string
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		require.Equal(t, chunkenc.ValFloat, vt)
		ts, f := it.At()
		if ts < mint || ts > maxt {
			continue
		}
		out = append(out, fmt.Sprintf("%d:%x", ts, math.Float64bits(f)))
	}
	require.NoError(t, it.Err())
	return out
}

// checkParts compares the select of "fr" read in parts of 3 series (as
// pkg/rollup reads, storage.WithPart) with the whole select, over ranges
// that cut chunks: the same series in the same order (and others without
// samples in the range, which a part may list), and each series'
// samples the same read in bulk right after Next, iterated right after
// Next, and iterated once the part has been listed to its end.
func checkParts(t *testing.T, db *storage.DB, from, to int64) (bulk, iterated int) {
	t.Helper()
	ctx := context.Background()
	ranges := [][2]int64{{from, to}, {from + 7_000, to - 3600_000 - 1}, {math.MinInt64, math.MaxInt64}, {to - 20*60_000 + 1, to}}
	for _, r := range ranges {
		mint, maxt := r[0], r[1]
		q, err := db.Querier(mint, maxt)
		require.NoError(t, err)
		hints := &promstorage.SelectHints{Start: mint, End: maxt}
		var want, wantLabels []string
		var wantLsets []labels.Labels
		ss := q.Select(ctx, false, hints, metric("fr"))
		for ss.Next() {
			s := ss.At()
			wantLabels = append(wantLabels, s.Labels().String())
			wantLsets = append(wantLsets, s.Labels())
			want = append(want, strings.Join(iterSamples(t, s.Iterator(nil), mint, maxt), " "))
		}
		require.NoError(t, ss.Err())
		require.NotEmpty(t, want)
		var gotLabels []string
		for i := 0; ; i++ {
			part := &storage.Part{Index: i, Size: 3}
			ps := q.Select(storage.WithPart(ctx, part), false, hints, metric("fr"))
			require.True(t, part.Served())
			var held []promstorage.Series
			for ps.Next() {
				s := ps.At()
				n := len(gotLabels)
				lv, ok := s.(interface{ LabelValue(string) string })
				require.True(t, ok, "a part's series reads label values")
				same := n < len(want)
				if same {
					wantLsets[n].Range(func(l labels.Label) { same = same && lv.LabelValue(l.Name) == l.Value })
				}
				if !same {
					// A series the select leaves out (no chunk in the
					// range): a part may list it, without samples
					// (partSeriesSet.Next leaves chunks to AppendFloats).
					ts, _, ok, err := s.(floatsAppender).AppendFloats(nil, nil, mint, maxt, false)
					require.NoError(t, err)
					require.True(t, ok)
					require.Empty(t, ts, "part %d %s: samples of a series the select leaves out", i, s.Labels())
					require.Empty(t, iterSamples(t, s.Iterator(nil), mint, maxt))
					continue
				}
				// A part's series reads a label's value before, and
				// without, building its labels (pkg/rollup's group keys).
				wantLsets[n].Range(func(l labels.Label) {
					require.Equal(t, l.Value, lv.LabelValue(l.Name), "part %d, label %s", i, l.Name)
				})
				require.Empty(t, lv.LabelValue("no_such_label"))
				what := fmt.Sprintf("part %d %s [%d, %d]", i, s.Labels(), mint, maxt)
				gotLabels = append(gotLabels, s.Labels().String())
				ts, fs, ok, err := s.(floatsAppender).AppendFloats(nil, nil, mint, maxt, false)
				require.NoError(t, err, what)
				if ok {
					bulk++
					var got []string
					for j := range ts {
						got = append(got, fmt.Sprintf("%d:%x", ts[j], math.Float64bits(fs[j])))
					}
					require.Equal(t, want[n], strings.Join(got, " "), "%s in bulk", what)
				} else {
					iterated++
				}
				require.Equal(t, want[n], strings.Join(iterSamples(t, s.Iterator(nil), mint, maxt), " "), "%s iterated", what)
				held = append(held, s)
			}
			require.NoError(t, ps.Err())
			for j, s := range held {
				n := len(gotLabels) - len(held) + j
				require.Equal(t, want[n], strings.Join(iterSamples(t, s.Iterator(nil), mint, maxt), " "), "part %d %s iterated after the part", i, s.Labels())
			}
			if part.Last() {
				break
			}
		}
		require.Equal(t, wantLabels, gotLabels)
		require.NoError(t, q.Close())
	}
	return bulk, iterated
}

// TestAppendFloatsEqualsIterator: a series read in bulk gives the samples
// its iterator gives, from memory, from Pebble (decimal chunks), from both
// with an open head chunk, after a reopen, and refuses (the caller
// iterates) when out-of-order chunks overlap.
func TestAppendFloatsEqualsIterator(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	from, to := fr0, fr0+3*3600_000
	fillFloatRead(t, db, from, to, 1)
	bulk, not := checkAppendFloats(t, db, from, to)
	require.Positive(t, bulk)
	require.Zero(t, not, "in memory")
	bulk, not = checkParts(t, db, from, to)
	require.Positive(t, bulk)
	require.Zero(t, not, "in memory, in parts")

	require.NoError(t, storage.CheckpointForTest(db))
	bulk, not = checkAppendFloats(t, db, from, to)
	require.Positive(t, bulk)
	require.Zero(t, not, "in Pebble")
	bulk, not = checkParts(t, db, from, to)
	require.Positive(t, bulk)
	require.Zero(t, not, "in Pebble, in parts")

	// An open head chunk after the stored ones.
	fillFloatRead(t, db, to, to+20*60_000, 2)
	bulk, not = checkAppendFloats(t, db, from, to+20*60_000)
	require.Positive(t, bulk)
	require.Zero(t, not, "head and Pebble")
	bulk, not = checkParts(t, db, from, to+20*60_000)
	require.Positive(t, bulk)
	require.Zero(t, not, "head and Pebble, in parts")

	db = reopen(t, db, dir, opts)
	bulk, not = checkAppendFloats(t, db, from, to+20*60_000)
	require.Positive(t, bulk)
	require.Zero(t, not, "reopened")

	// Out-of-order samples into the newest chunks: they overlap.
	ctx := context.Background()
	app := db.AppenderV2(ctx)
	for i := range 12 {
		lset := labels.FromStrings("__name__", "fr", "i", fmt.Sprint(i))
		_, err := app.Append(0, lset, 0, to+20*60_000-5*60_000+7, 42, nil, nil, promstorage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	_, not = checkAppendFloats(t, db, from, to+20*60_000)
	require.Positive(t, not, "overlapping chunks are iterated")
	_, not = checkParts(t, db, from, to+20*60_000)
	require.Positive(t, not, "overlapping chunks are iterated, in parts")
	require.NoError(t, storage.CheckpointForTest(db))
	_, not = checkAppendFloats(t, db, from, to+20*60_000)
	require.Positive(t, not, "overlapping chunks in Pebble are iterated")
	_, not = checkParts(t, db, from, to+20*60_000)
	require.Positive(t, not, "overlapping chunks in Pebble are iterated, in parts")
}

// TestAppendFloatsOnlyRightAfterNext: a series read after the select has
// moved on is not read in bulk (its chunk metas are gone); the caller
// iterates it.
func TestAppendFloatsOnlyRightAfterNext(t *testing.T) {
	db := storageForFloatRead(t)
	q, err := db.Querier(fr0, fr0+3600_000)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, metric("fr"))
	var all []promstorage.Series
	for ss.Next() {
		all = append(all, ss.At())
	}
	require.NoError(t, ss.Err())
	require.Greater(t, len(all), 1)
	_, _, ok, err := all[0].(floatsAppender).AppendFloats(nil, nil, fr0, fr0+3600_000, false)
	require.NoError(t, err)
	require.False(t, ok)
	ts, _, ok, err := all[len(all)-1].(floatsAppender).AppendFloats(nil, nil, fr0, fr0+3600_000, false)
	require.NoError(t, err)
	require.True(t, ok, "the last series listed")
	require.NotEmpty(t, ts)
}

func storageForFloatRead(t *testing.T) *storage.DB {
	db, err := storage.Open(t.TempDir(), testOptions())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	fillFloatRead(t, db, fr0, fr0+3*3600_000, 1)
	require.NoError(t, storage.CheckpointForTest(db))
	return db
}

// TestAppendFloatsCorruptChunk: a stored chunk whose bytes are cut short
// is an error that says what is wrong, not a panic and not fewer samples.
func TestAppendFloatsCorruptChunk(t *testing.T) {
	db := storageForFloatRead(t)
	CorruptDecimalChunks(t, db)
	q, err := db.Querier(fr0, fr0+3*3600_000)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, metric("fr"))
	errs := 0
	for ss.Next() {
		_, _, _, err := ss.At().(floatsAppender).AppendFloats(nil, nil, fr0, fr0+3*3600_000, false)
		if err != nil {
			require.ErrorContains(t, err, "decimal chunk")
			errs++
		}
	}
	require.NoError(t, ss.Err())
	require.Positive(t, errs)
}

// CorruptDecimalChunks cuts the last two bytes off every stored decimal
// chunk (encoding 0x81) of db whose value section is Rice-coded or XOR.
func CorruptDecimalChunks(t testing.TB, db *storage.DB) {
	t.Helper()
	pdb := storage.PebbleForTest(db)
	it, err := pdb.NewIter(nil)
	require.NoError(t, err)
	b := pdb.NewBatch()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) < 5 || k[4] != storage.KindChunk || len(v) < 12 || v[0] != 0x81 {
			continue
		}
		require.NoError(t, b.Set(slices.Clone(k), slices.Clone(v[:len(v)-2]), nil))
		n++
	}
	require.NoError(t, it.Close())
	require.Positive(t, n)
	require.NoError(t, b.Commit(pebble.Sync))
}

// TestPartListsByMatchers: a querier lists a select's series once for all
// its parts, by its matchers; selects whose matchers differ only in their
// type, or in where a name ends and its value begins, get lists of their
// own.
func TestPartListsByMatchers(t *testing.T) {
	db, err := storage.Open(t.TempDir(), testOptions())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	for _, ls := range []labels.Labels{
		labels.FromStrings("__name__", "m", "a", "bc"),
		labels.FromStrings("__name__", "m", "ab", "c"),
		labels.FromStrings("__name__", "m", "a", "bcd"),
	} {
		appendFloats(t, ctx, db, ls, point{t: 1000, v: 1})
	}
	q, err := db.Querier(0, 2000)
	require.NoError(t, err)
	defer q.Close()
	sel := func(ms ...*labels.Matcher) []string {
		t.Helper()
		ss := q.Select(storage.WithPart(ctx, &storage.Part{Index: 0, Size: 10}), false, nil, ms...)
		var got []string
		for ss.Next() {
			got = append(got, ss.At().Labels().String())
		}
		require.NoError(t, ss.Err())
		slices.Sort(got)
		return got
	}
	for _, c := range []struct {
		ms   []*labels.Matcher
		want []string
	}{
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "a", "bc")}, []string{`{__name__="m", a="bc"}`}},
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "ab", "c")}, []string{`{__name__="m", ab="c"}`}},
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "a", "bc")}, []string{`{__name__="m", a="bc"}`}},
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchNotEqual, "a", "bc")}, []string{`{__name__="m", a="bcd"}`, `{__name__="m", ab="c"}`}},
		{[]*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "a", "bc.*")}, []string{`{__name__="m", a="bc"}`, `{__name__="m", a="bcd"}`}},
		{[]*labels.Matcher{metric("m"), labels.MustNewMatcher(labels.MatchEqual, "a", "bcd")}, []string{`{__name__="m", a="bcd"}`}},
	} {
		// Twice: the second select of the same matchers reads the list
		// the first made.
		for range 2 {
			require.Equal(t, c.want, sel(c.ms...), "%v", c.ms)
		}
	}
}
