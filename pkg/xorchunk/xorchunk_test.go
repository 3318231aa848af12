package xorchunk_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/xorchunk"
)

type sample struct {
	t int64
	v float64
}

// gen returns n samples of one of several shapes: regular and jittered
// scrapes, gaps of every timestamp bucket, counters, decimals, random
// floats, constants, stale markers, negative times.
func gen(r *rand.Rand, n int) []sample {
	out := make([]sample, n)
	t := r.Int64N(1<<42) - 1<<41
	step := []int64{1, 15_000, 60_000, 1_000_000}[r.IntN(4)]
	v := []float64{0, 1e9, -3.5, math.Pi}[r.IntN(4)]
	shape := r.IntN(6)
	for i := range out {
		switch r.IntN(20) {
		case 0: // a gap in some bucket of the dod encoding
			t += []int64{1 << 13, 1 << 16, 1 << 19, 1 << 30, 1 << 40}[r.IntN(5)] + r.Int64N(7)
		case 1:
			t += 1 + r.Int64N(step)
		default:
			t += step + r.Int64N(3) - 1
			if t <= out[max(i-1, 0)].t && i > 0 {
				t = out[i-1].t + 1
			}
		}
		switch shape {
		case 0:
			v += float64(r.IntN(100))
		case 1:
			v = math.Round(r.Float64()*1e4) / 100
		case 2:
			v = r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
		case 3: // constant
		case 4:
			v = math.Float64frombits(r.Uint64())
		case 5:
			v = float64(r.IntN(3))
		}
		out[i] = sample{t, v}
		if r.IntN(30) == 0 {
			out[i].v = math.Float64frombits(value.StaleNaN)
		}
	}
	return out
}

func prometheusXOR(t *testing.T, ss []sample) []byte {
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	require.NoError(t, err)
	for _, s := range ss {
		app.Append(0, s.t, s.v)
	}
	return c.Bytes()
}

// The encoder writes exactly the bytes Prometheus' XOR appender writes.
func TestEncoderWritesPrometheusBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var e xorchunk.Encoder
	var buf []byte
	for i := 0; i < 3000; i++ {
		ss := gen(r, 1+r.IntN(300))
		e.Reset(buf)
		for _, s := range ss {
			e.Append(s.t, s.v)
		}
		require.Equal(t, len(ss), e.NumSamples())
		got := e.Bytes()
		require.Equal(t, prometheusXOR(t, ss), got, "case %d: %d samples", i, len(ss))
		buf = got
	}
}

// Encode re-encodes another float chunk (XOR2, with and without start
// timestamps) to the same samples.
func TestEncodeFromXOR2(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var e xorchunk.Encoder
	for i := 0; i < 500; i++ {
		ss := gen(r, 1+r.IntN(200))
		x2 := chunkenc.NewXOR2Chunk()
		app, err := x2.Appender()
		require.NoError(t, err)
		withST := i%2 == 0
		for _, s := range ss {
			st := int64(0)
			if withST {
				st = s.t - 10
			}
			app.Append(st, s.t, s.v)
		}
		data, mint, maxt, err := e.Encode(nil, x2.Iterator(nil))
		require.NoError(t, err)
		require.Equal(t, ss[0].t, mint)
		require.Equal(t, ss[len(ss)-1].t, maxt)
		require.Equal(t, prometheusXOR(t, ss), data)
		c, err := chunkenc.FromData(chunkenc.EncXOR, data)
		require.NoError(t, err)
		it := c.Iterator(nil)
		for _, s := range ss {
			require.Equal(t, chunkenc.ValFloat, it.Next())
			gt, gv := it.At()
			require.Equal(t, s.t, gt)
			require.Equal(t, math.Float64bits(s.v), math.Float64bits(gv))
		}
		require.Equal(t, chunkenc.ValNone, it.Next())
	}
}

func TestEncodeRefuses(t *testing.T) {
	var e xorchunk.Encoder
	_, _, _, err := e.Encode(nil, chunkenc.NewXORChunk().Iterator(nil))
	require.ErrorContains(t, err, "no samples")

	h := chunkenc.NewHistogramChunk()
	app, err := h.Appender()
	require.NoError(t, err)
	_, _, _, err = app.AppendHistogram(nil, 0, 1, tsdbHistogram(), false)
	require.NoError(t, err)
	_, _, _, err = e.Encode(nil, h.Iterator(nil))
	require.ErrorContains(t, err, "not a float")
}

func BenchmarkEncoder(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	ss := gen(r, 120)
	for i := range ss { // a counter scraped every 15 s
		ss[i] = sample{int64(i) * 15_000, float64(i * 37)}
	}
	b.Run("levitated", func(b *testing.B) {
		var e xorchunk.Encoder
		var buf []byte
		for b.Loop() {
			e.Reset(buf)
			for _, s := range ss {
				e.Append(s.t, s.v)
			}
			buf = e.Bytes()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ss)), "ns/sample")
	})
	b.Run("chunkenc", func(b *testing.B) {
		for b.Loop() {
			c := chunkenc.NewXORChunk()
			app, _ := c.Appender()
			for _, s := range ss {
				app.Append(0, s.t, s.v)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ss)), "ns/sample")
	})
}

func tsdbHistogram() *histogram.Histogram {
	return &histogram.Histogram{Count: 1, Sum: 1, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{1}}
}
