package storage_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// The chunk querier (remote read, the StoreAPI) hands out only the
// encodings their clients know: decimal chunks read from Pebble, the
// head's XOR2 chunks (open and closed, with start timestamps or not) and
// out-of-order chunks come out as XOR, with exactly the samples the
// querier reads; histogram chunks pass on.
func TestChunkQuerierStandardEncodings(t *testing.T) {
	ctx := context.Background()
	db := storagetest.New(t)
	r := rand.New(rand.NewPCG(7, 8))
	const step = 15_000
	write := func(from, to int64, withST bool) {
		app := db.AppenderV2(ctx)
		for i := 0; i < 12; i++ {
			ls := labels.FromStrings("__name__", "m", "i", strconv.Itoa(i))
			for ts := from; ts < to; ts += step {
				var v float64
				switch i % 4 {
				case 0: // a counter: decimal chunks
					v = float64(ts / 1000 * int64(i+1))
				case 1: // full-precision floats: XOR inside the decimal chunk
					v = r.Float64()
				case 2:
					v = math.Round(r.NormFloat64()*1e4) / 100
				case 3:
					v = 42
				}
				st := int64(0)
				if withST && i%3 == 0 {
					st = from - 1
				}
				_, err := app.Append(0, ls, st, ts, v, nil, nil, promstorage.AOptions{})
				require.NoError(t, err)
			}
		}
		hls := labels.FromStrings("__name__", "h")
		for k, ts := 0, from; ts < to; k, ts = k+1, ts+step {
			_, err := app.Append(0, hls, 0, ts, 0, tsdbutil.GenerateTestHistogram(int64(k)), nil, promstorage.AOptions{})
			require.NoError(t, err)
		}
		require.NoError(t, app.Commit())
	}
	write(0, 3*3600_000, false)
	require.NoError(t, db.Flush(ctx)) // decimal chunks in Pebble
	write(3*3600_000, 4*3600_000, true)
	// Out of order, inside the window.
	app := db.AppenderV2(ctx)
	for i := 0; i < 12; i++ {
		ls := labels.FromStrings("__name__", "m", "i", strconv.Itoa(i))
		_, err := app.Append(0, ls, 0, 4*3600_000-step/2, 7, nil, nil, promstorage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())

	mint, maxt := int64(0), int64(4*3600_000)
	q, err := db.Querier(mint, maxt)
	require.NoError(t, err)
	defer q.Close()
	want := map[string][]string{}
	ss := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	for ss.Next() {
		want[ss.At().Labels().String()] = samplesOf(t, ss.At().Iterator(nil))
	}
	require.NoError(t, ss.Err())
	require.Len(t, want, 13)

	cq, err := db.ChunkQuerier(mint, maxt)
	require.NoError(t, err)
	defer cq.Close()
	cs := cq.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	got := map[string][]string{}
	encodings := map[chunkenc.Encoding]int{}
	for cs.Next() {
		s := cs.At()
		var all []string
		it := s.Iterator(nil)
		for it.Next() {
			c := it.At().Chunk
			encodings[c.Encoding()]++
			require.Contains(t, []chunkenc.Encoding{chunkenc.EncXOR, chunkenc.EncHistogramST, chunkenc.EncHistogram}, c.Encoding(), "series %s", s.Labels())
			all = append(all, samplesOf(t, c.Iterator(nil))...)
		}
		require.NoError(t, it.Err())
		got[s.Labels().String()] = all
	}
	require.NoError(t, cs.Err())
	require.Equal(t, want, got)
	require.Greater(t, encodings[chunkenc.EncXOR], 12*3, "chunks from Pebble and the head")
}

// samplesOf renders samples exactly (times, float bits, histograms).
func samplesOf(t *testing.T, it chunkenc.Iterator) []string {
	t.Helper()
	var out []string
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		switch vt {
		case chunkenc.ValFloat:
			ts, v := it.At()
			out = append(out, strconv.FormatInt(ts, 10)+" "+strconv.FormatUint(math.Float64bits(v), 16))
		case chunkenc.ValHistogram:
			ts, h := it.AtHistogram(nil)
			out = append(out, strconv.FormatInt(ts, 10)+" "+h.String())
		default:
			t.Fatalf("unexpected value type %s", vt)
		}
	}
	require.NoError(t, it.Err())
	return out
}
