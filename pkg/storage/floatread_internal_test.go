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

// decimalTestChunk stores ts, vs as a checkpoint does and returns the
// decimal chunk read back.
func decimalTestChunk(t testing.TB, ts []int64, vs []float64) *decimalChunk {
	t.Helper()
	c := chunkenc.NewXOR2Chunk()
	app, err := c.Appender()
	require.NoError(t, err)
	for i := range ts {
		app.Append(0, ts[i], vs[i])
	}
	enc, data := storedChunk(nil, c, nil)
	require.Equal(t, encDecimal, enc)
	dc, err := newDecimalChunk(data, ts[0])
	require.NoError(t, err)
	return dc
}

// iterFloats is what decimalIterator returns in [mint, maxt].
func iterFloats(c chunkenc.Chunk, mint, maxt int64, dropStale bool) ([]int64, []float64, error) {
	var ts []int64
	var fs []float64
	it := c.Iterator(nil)
	for it.Next() == chunkenc.ValFloat {
		t, f := it.At()
		if t < mint || dropStale && value.IsStaleNaN(f) {
			continue
		}
		if t > maxt {
			break
		}
		ts = append(ts, t)
		fs = append(fs, f)
	}
	return ts, fs, it.Err()
}

func requireSameFloats(t *testing.T, what string, wantT []int64, wantF []float64, gotT []int64, gotF []float64) {
	t.Helper()
	require.Equal(t, len(wantT), len(gotT), "%s: samples", what)
	require.Equal(t, len(gotT), len(gotF), "%s: values", what)
	for i := range wantT {
		require.Equal(t, wantT[i], gotT[i], "%s: sample %d", what, i)
		require.Equal(t, math.Float64bits(wantF[i]), math.Float64bits(gotF[i]), "%s: sample %d at %d", what, i, wantT[i])
	}
}

// TestDecimalAppendFloats: a decimal chunk decoded whole gives
// decimalIterator's samples, for every timestamp and value mode and for
// ranges that start and end before, on, between and after samples.
func TestDecimalAppendFloats(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	stale := math.Float64frombits(value.StaleNaN)
	type gen struct {
		name string
		v    func(i int) float64
		mode byte
	}
	counter := 0.0
	vals := []gen{
		{"constant", func(int) float64 { return 7.25 }, valConstant},
		{"stale constant", func(int) float64 { return stale }, valConstant},
		{"counter", func(i int) float64 {
			if i == 0 {
				counter = 1e6
			}
			counter += float64(rng.IntN(40))
			return counter
		}, valDecimalRice},
		{"decimals", func(int) float64 { return float64(rng.IntN(100000)-50000) / 1000 }, valDecimalRice},
		{"big steps", func(i int) float64 { return float64(i) * 1e12 * float64(rng.IntN(3)+1) }, valDecimalRice},
		{"floats, NaN, stale", func(i int) float64 {
			switch i % 17 {
			case 3:
				return math.NaN()
			case 5, 6:
				return stale
			case 9:
				return math.Inf(-1)
			}
			return rng.NormFloat64()
		}, valXOR},
		{"repeats", func(i int) float64 { return []float64{math.Pi, math.Pi, math.E}[i%3] }, valXOR},
	}
	type tgen struct {
		name string
		d    func(i int) int64
		mode byte
	}
	times := []tgen{
		{"regular", func(int) int64 { return 15_000 }, tsRegular},
		{"jitter", func(int) int64 { return 15_000 + rng.Int64N(200) - 100 }, tsRice},
		{"wild", func(int) int64 { return 1 + rng.Int64N(1<<40) }, tsRice},
	}
	for _, n := range []int{2, 3, 120, 481} {
		for _, tg := range times {
			for _, vg := range vals {
				name := fmt.Sprintf("n=%d/%s/%s", n, tg.name, vg.name)
				ts := make([]int64, n)
				vs := make([]float64, n)
				tt := int64(1_700_000_000_000) - rng.Int64N(1e6)
				for i := range ts {
					ts[i], vs[i] = tt, vg.v(i)
					tt += tg.d(i)
				}
				c := decimalTestChunk(t, ts, vs)
				if n > 2 || tg.mode == tsRegular {
					require.Equal(t, tg.mode, c.tsMode, name)
				}
				if n > 2 {
					require.Equal(t, vg.mode, c.valMode, name)
				}
				// Range ends: around every few samples, and outside.
				var ends []int64
				for i := 0; i < n; i += max(1, n/7) {
					ends = append(ends, ts[i]-1, ts[i], ts[i]+1)
				}
				ends = append(ends, ts[n-1]-1, ts[n-1], ts[n-1]+1, math.MinInt64, math.MaxInt64, ts[0]-1e9, ts[n-1]+1e9)
				for _, mint := range ends {
					for _, maxt := range ends {
						for _, drop := range []bool{false, true} {
							what := fmt.Sprintf("%s [%d, %d] drop=%v", name, mint, maxt, drop)
							wantT, wantF, err := iterFloats(c, mint, maxt, drop)
							require.NoError(t, err, what)
							// Appended after samples already there.
							gotT, gotF, err := c.appendFloats([]int64{1}, []float64{2}, mint, maxt, drop)
							require.NoError(t, err, what)
							require.Equal(t, int64(1), gotT[0], what)
							requireSameFloats(t, what, wantT, wantF, gotT[1:], gotF[1:])
						}
					}
				}
			}
		}
	}
}

// TestDecimalAppendFloatsCorrupt: a chunk cut short or with a wrong byte
// is an error naming what is wrong, never a panic; every sample returned
// before is decimalIterator's.
func TestDecimalAppendFloatsCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ts := make([]int64, 120)
	vs := make([]float64, 120)
	tt := int64(1_700_000_000_000)
	for i := range ts {
		ts[i], vs[i] = tt, float64(rng.IntN(1000))/10
		tt += 15_000 + rng.Int64N(50)
	}
	good := decimalTestChunk(t, ts, vs)
	// Cut short: the value section ends early.
	var c decimalChunk
	require.NoError(t, c.parse(good.b[:len(good.b)-5], ts[0]))
	_, _, err := c.appendFloats(nil, nil, math.MinInt64, math.MaxInt64, false)
	require.ErrorIs(t, err, errCorruptValue)
	require.ErrorContains(t, err, "decimal chunk: value bits")
	_, _, iterErr := iterFloats(&c, math.MinInt64, math.MaxInt64, false)
	require.ErrorContains(t, iterErr, "decimal chunk: value bits")

	// Every byte flipped in turn: both readers agree on whether it is an
	// error, and on the samples when it is not.
	for i := range good.b {
		b := append([]byte(nil), good.b...)
		b[i] ^= 0x5a
		var c decimalChunk
		if c.parse(b, ts[0]) != nil {
			continue
		}
		wantT, wantF, wantErr := iterFloats(&c, math.MinInt64, math.MaxInt64, false)
		gotT, gotF, err := c.appendFloats(nil, nil, math.MinInt64, math.MaxInt64, false)
		if wantErr != nil {
			require.Error(t, err, "byte %d", i)
			require.ErrorIs(t, err, errCorruptValue)
			continue
		}
		require.NoError(t, err, "byte %d", i)
		requireSameFloats(t, fmt.Sprintf("byte %d", i), wantT, wantF, gotT, gotF)
	}
}

// FuzzDecimalAppendFloats decodes arbitrary chunk bytes whole and through
// decimalIterator: never a panic, an error from both or neither, and the
// same samples.
func FuzzDecimalAppendFloats(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, mode := range []int{0, 1, 2} {
		ts := make([]int64, 30)
		vs := make([]float64, 30)
		for i := range ts {
			ts[i] = int64(i) * 1000
			if mode > 0 {
				ts[i] += rng.Int64N(10)
			}
			vs[i] = float64(rng.IntN(100)) / 10
			if mode == 2 {
				vs[i] = rng.Float64()
			}
		}
		f.Add(decimalTestChunk(f, ts, vs).b, int64(0), int64(5000), int64(20000))
	}
	f.Fuzz(func(t *testing.T, b []byte, minT, mint, maxt int64) {
		var c decimalChunk
		if c.parse(b, minT) != nil {
			return
		}
		wantT, wantF, wantErr := iterFloats(&c, math.MinInt64, math.MaxInt64, false)
		gotT, gotF, err := c.appendFloats(nil, nil, math.MinInt64, math.MaxInt64, false)
		if wantErr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		requireSameFloats(t, "whole", wantT, wantF, gotT, gotF)
		for _, drop := range []bool{false, true} {
			wantT, wantF, _ := iterFloats(&c, mint, maxt, drop)
			gotT, gotF, err := c.appendFloats(nil, nil, mint, maxt, drop)
			require.NoError(t, err)
			requireSameFloats(t, "range", wantT, wantF, gotT, gotF)
		}
	})
}

// BenchmarkDecimalRead decodes a counter's chunk (120 samples, 15 s with
// jitter) through decimalIterator and whole (appendFloats).
func BenchmarkDecimalRead(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, jitter := range []bool{false, true} {
		ts := make([]int64, 120)
		vs := make([]float64, 120)
		tt, v := int64(1_700_000_000_000), 1e5
		for i := range ts {
			ts[i], vs[i] = tt, v
			tt += 15_000
			if jitter {
				tt += rng.Int64N(20) - 10
			}
			v += float64(rng.IntN(300))
		}
		c := decimalTestChunk(b, ts, vs)
		name := fmt.Sprintf("jitter=%v", jitter)
		b.Run(name+"/iterator", func(b *testing.B) {
			var it chunkenc.Iterator
			var sum float64
			for b.Loop() {
				it = c.Iterator(it)
				for it.Next() == chunkenc.ValFloat {
					_, f := it.At()
					sum += f
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ts)), "ns/sample")
		})
		b.Run(name+"/whole", func(b *testing.B) {
			var tbuf []int64
			var fbuf []float64
			for b.Loop() {
				var err error
				tbuf, fbuf, err = c.appendFloats(tbuf[:0], fbuf[:0], math.MinInt64, math.MaxInt64, true)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ts)), "ns/sample")
		})
	}
}
