package storage

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
)

// xor2TestSamples returns n random samples: timestamp steps that are
// steady, jittered, zero, large, negative or beyond 64-bit dods' 20-bit
// range, and values that repeat, count, jump, are NaN (with payloads), ±Inf
// or staleness markers.
func xor2TestSamples(r *rand.Rand, n int) ([]int64, []float64) {
	ts := make([]int64, n)
	vs := make([]float64, n)
	t := r.Int64N(1<<42) - 1<<41
	step := []int64{1, 15_000, 60_000, 1_000_000}[r.IntN(4)]
	v := []float64{0, 1e9, -3.5, math.Pi}[r.IntN(4)]
	shape := r.IntN(5)
	for i := range n {
		switch r.IntN(24) {
		case 0:
			t += []int64{1 << 12, 1 << 13, 1 << 19, 1 << 20, 1 << 30, 1 << 40, 1 << 62}[r.IntN(7)] + r.Int64N(7) - 3
		case 1:
			t -= r.Int64N(1 << uint(r.IntN(45)))
		case 2:
			// dod 0 or a repeated timestamp
		case 3:
			t += 1 + r.Int64N(step)
		default:
			t += step + r.Int64N(3) - 1
		}
		switch shape {
		case 0: // constant
		case 1: // counter
			v += float64(r.IntN(100))
		case 2: // decimals
			v = math.Round(r.Float64()*1e4) / 100
		case 3:
			v = r.NormFloat64() * 1e6
		case 4: // any bits
			v = math.Float64frombits(r.Uint64())
		}
		switch r.IntN(30) {
		case 0:
			v = math.Float64frombits(value.StaleNaN)
		case 1:
			v = math.NaN()
		case 2:
			v = math.Float64frombits(0x7ff8000000000000 | r.Uint64()&0xfffffffffffff)
		case 3:
			v = math.Inf(1 - 2*r.IntN(2))
		case 4:
			v = 0
		}
		ts[i], vs[i] = t, v
		if math.IsNaN(v) {
			// go on from a number
			v = float64(r.IntN(1000))
		}
	}
	return ts, vs
}

// xor2TestChunks writes ts, vs with chunkenc's XOR2 appender and with
// xor2Head (which hands over to chunkenc's appender at the 127th sample).
func xor2TestChunks(t testing.TB, ts []int64, vs []float64, headCap int) []chunkenc.Chunk {
	t.Helper()
	c := chunkenc.NewXOR2Chunk()
	app, err := c.Appender()
	require.NoError(t, err)
	h := newXOR2Head(headCap)
	for i := range ts {
		app.Append(0, ts[i], vs[i])
		h.Append(0, ts[i], vs[i])
	}
	return []chunkenc.Chunk{c, h}
}

// iterXOR2 is what appendIterFloats gives for the chunk.
func iterXOR2(c chunkenc.Chunk, mint, maxt int64, dropStale bool) ([]int64, []float64, bool, error) {
	return appendIterFloats(c.Iterator(nil), nil, nil, mint, maxt, dropStale)
}

// requireSameXOR2 decodes b in bulk and with the iterator, in [mint,
// maxt]: the same samples, unless the bits end before the chunk's samples
// do (the bulk decoder says so; the iterator may not).
func requireSameXOR2(t *testing.T, what string, b []byte, mint, maxt int64, dropStale bool) {
	t.Helper()
	c, err := chunkenc.FromData(chunkenc.EncXOR2, b)
	require.NoError(t, err)
	wantT, wantF, wantOK, wantErr := iterXOR2(c, mint, maxt, dropStale)
	gotT, gotF, ok, err := appendXOR2Floats(b, nil, nil, mint, maxt, dropStale)
	if b[xor2STHeader] != 0 {
		require.False(t, ok, "%s: a start-timestamp header is left to the iterator", what)
		require.Empty(t, gotT, what)
		return
	}
	require.True(t, ok, what)
	require.True(t, wantOK, what)
	if err != nil {
		// The bits end early. chunkenc's reader does not always say so
		// (reading past the end it can wrap its count of valid bits and
		// return zeros); appendChunk reads such a chunk with the iterator.
		require.ErrorIs(t, err, errXOR2Short, what)
		return
	}
	require.NoError(t, wantErr, "%s: the bulk decoder read no bits past the end", what)
	requireSameXOR2Floats(t, what, wantT, wantF, gotT, gotF)
}

// TestAppendXOR2Floats: random XOR2 chunks, written by chunkenc and by
// xor2Head, decoded in bulk give the iterator's samples for every range
// cut at, between and around their samples, with and without staleness
// markers; so does appendChunk, which reads chunks of more than 127
// samples (whose start-timestamp header chunkenc sets) with the iterator.
func TestAppendXOR2Floats(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	set := &floatSeriesSet{}
	for iter := range 300 {
		n := 1 + r.IntN(140)
		if iter%10 == 0 {
			n = 1 + r.IntN(4)
		}
		ts, vs := xor2TestSamples(r, n)
		for ci, c := range xor2TestChunks(t, ts, vs, r.IntN(300)) {
			b := c.Bytes()
			what := fmt.Sprintf("chunk %d/%d (%d samples)", iter, ci, n)
			require.Equal(t, n > 127, b[xor2STHeader] != 0, what)
			// Cuts: every sample's timestamp, ±1, and the extremes.
			cuts := []int64{math.MinInt64, math.MaxInt64}
			for _, x := range ts {
				cuts = append(cuts, x-1, x, x+1)
			}
			if len(cuts) > 24 {
				r.Shuffle(len(cuts), func(i, j int) { cuts[i], cuts[j] = cuts[j], cuts[i] })
				cuts = append(cuts[:22], math.MinInt64, math.MaxInt64)
			}
			for _, mint := range cuts {
				for _, maxt := range cuts {
					drop := r.IntN(2) == 0
					cw := fmt.Sprintf("%s [%d, %d] drop %v", what, mint, maxt, drop)
					requireSameXOR2(t, cw, b, mint, maxt, drop)
					wantT, wantF, wantOK, wantErr := iterXOR2(c, mint, maxt, drop)
					prefix := []int64{-7}
					prefixF := []float64{-7}
					gotT, gotF, ok, err := set.appendChunk(c, prefix, prefixF, mint, maxt, drop)
					require.Equal(t, wantOK, ok, cw)
					require.Equal(t, wantErr, err, cw)
					require.Equal(t, int64(-7), gotT[0], cw)
					requireSameXOR2Floats(t, cw, wantT, wantF, gotT[1:], gotF[1:])
				}
			}
		}
	}
}

// TestAppendXOR2FloatsCorrupt: every truncation of random chunks and
// random byte and bit changes decode without a panic to the iterator's
// samples, or to errXOR2Short when their bits end early (always when the
// iterator has an error); appendChunk returns what the iterator gives.
func TestAppendXOR2FloatsCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	set := &floatSeriesSet{}
	errs, short := 0, 0
	for iter := range 200 {
		ts, vs := xor2TestSamples(r, 1+r.IntN(126))
		b := xor2TestChunks(t, ts, vs, 0)[r.IntN(2)].Bytes()
		var variants [][]byte
		for k := 3; k < len(b); k++ {
			variants = append(variants, b[:k:k])
		}
		for range 20 {
			m := append([]byte(nil), b...)
			i := 2 + r.IntN(len(m)-2)
			if r.IntN(2) == 0 {
				m[i] ^= 1 << r.IntN(8)
			} else {
				m[i] = byte(r.Uint32())
			}
			if r.IntN(3) == 0 {
				m[2] = 0
			}
			if r.IntN(3) == 0 {
				m[0], m[1] = byte(r.IntN(2)), byte(r.Uint32()) // up to 511 samples
			}
			variants = append(variants, m)
		}
		for vi, m := range variants {
			what := fmt.Sprintf("chunk %d variant %d", iter, vi)
			requireSameXOR2(t, what, m, math.MinInt64, math.MaxInt64, false)
			if _, _, _, err := appendXOR2Floats(m, nil, nil, math.MinInt64, math.MaxInt64, false); err != nil {
				short++
			}
			c, err := chunkenc.FromData(chunkenc.EncXOR2, m)
			require.NoError(t, err)
			wantT, wantF, wantOK, wantErr := iterXOR2(c, math.MinInt64, math.MaxInt64, false)
			if wantErr != nil {
				errs++
			}
			gotT, gotF, ok, err := set.appendChunk(c, nil, nil, math.MinInt64, math.MaxInt64, false)
			require.Equal(t, wantOK, ok, what)
			require.Equal(t, wantErr, err, what)
			requireSameXOR2Floats(t, what, wantT, wantF, gotT, gotF)
		}
	}
	require.Greater(t, errs, 1000, "truncated chunks give errors")
	require.Greater(t, short, errs, "the bulk decoder finds more short chunks than the iterator")
}

// FuzzAppendXOR2Floats decodes arbitrary XOR2 bytes in bulk and with the
// iterator: never a panic, the same samples unless the bulk decoder finds
// the bits end early.
func FuzzAppendXOR2Floats(f *testing.F) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{1, 2, 3, 30, 120} {
		ts, vs := xor2TestSamples(r, n)
		f.Add(xor2TestChunks(f, ts, vs, 0)[0].Bytes(), ts[0], ts[n-1], false)
	}
	f.Fuzz(func(t *testing.T, b []byte, mint, maxt int64, dropStale bool) {
		if len(b) < xor2STHeader+1 {
			return // chunkenc's iterator slices past its header
		}
		requireSameXOR2(t, "whole", b, math.MinInt64, math.MaxInt64, false)
		requireSameXOR2(t, "range", b, mint, maxt, dropStale)
	})
}

// BenchmarkXOR2Read reads a 120-sample chunk (15 s steps: a counter,
// with and without jitter, and a gauge of random values) through chunkenc's iterator (appendIterFloats) and
// in bulk (appendXOR2Floats).
func BenchmarkXOR2Read(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, kind := range []string{"counter", "counter-jitter", "gauge"} {
		jitter := kind == "counter-jitter"
		const n = 120
		c := chunkenc.NewXOR2Chunk()
		app, err := c.Appender()
		require.NoError(b, err)
		t, v := int64(1_700_000_000_000), 0.0
		for range n {
			t += 15_000
			if jitter {
				t += r.Int64N(200) - 100
			}
			v += float64(r.IntN(50))
			if kind == "gauge" {
				v = r.Float64()
			}
			app.Append(0, t, v)
		}
		ts := make([]int64, 0, n)
		fs := make([]float64, 0, n)
		var it chunkenc.Iterator
		b.Run(kind+"/iterator", func(b *testing.B) {
			for b.Loop() {
				it = c.Iterator(it)
				ts, fs, _, _ = appendIterFloats(it, ts[:0], fs[:0], math.MinInt64, math.MaxInt64, true)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
		b.Run(kind+"/bulk", func(b *testing.B) {
			for b.Loop() {
				ts, fs, _, _ = appendXOR2Floats(c.Bytes(), ts[:0], fs[:0], math.MinInt64, math.MaxInt64, true)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
	}
}

// requireSameXOR2Floats is requireSameFloats, its per-sample assertions
// made only when the samples differ (the tests compare many millions).
func requireSameXOR2Floats(t *testing.T, what string, wantT []int64, wantF []float64, gotT []int64, gotF []float64) {
	t.Helper()
	same := len(wantT) == len(gotT) && len(wantF) == len(gotF) && len(wantT) == len(wantF)
	for i := 0; same && i < len(wantT); i++ {
		same = wantT[i] == gotT[i] && math.Float64bits(wantF[i]) == math.Float64bits(gotF[i])
	}
	if !same {
		requireSameFloats(t, what, wantT, wantF, gotT, gotF)
		t.Fatalf("%s: the samples differ", what)
	}
}
