package storage

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// benchChunks are chunks of 120 samples at 15 s like peer-bench's: a
// request counter (integer increments around mean with sqrt(mean) noise:
// the decimal Rice path) and a full-precision ratio gauge (AR(1) around a
// mean: the XOR path).
func benchChunks(b *testing.B) map[string]*decimalChunk {
	rng := rand.New(rand.NewPCG(3, 4))
	out := map[string]*decimalChunk{}
	for _, mean := range []float64{3, 30, 300} {
		ts, vs := make([]int64, 120), make([]float64, 120)
		v := 1e4
		for i := range ts {
			ts[i] = 1_700_000_000_000 + int64(i)*15_000
			v += math.Max(0, math.Round(mean+math.Sqrt(mean)*rng.NormFloat64()))
			vs[i] = v
		}
		out[fmt.Sprintf("counter%v", mean)] = decimalTestChunk(b, ts, vs)
	}
	ts, vs := make([]int64, 120), make([]float64, 120)
	v := 0.4
	for i := range ts {
		ts[i] = 1_700_000_000_000 + int64(i)*15_000
		v = math.Min(1, math.Max(0.0001, v+0.3*(0.4-v)+0.05*rng.NormFloat64()))
		vs[i] = v
	}
	out["gauge"] = decimalTestChunk(b, ts, vs)
	return out
}

// BenchmarkAppendFloats decodes whole chunks (appendFloats) of the shapes
// of benchChunks, and the part of one a window of 5 min needs.
func BenchmarkAppendFloats(b *testing.B) {
	for _, name := range []string{"counter3", "counter30", "counter300", "gauge"} {
		c := benchChunks(b)[name]
		for _, part := range []bool{false, true} {
			mint, maxt := int64(math.MinInt64), int64(math.MaxInt64)
			if part {
				mint = c.minT + 100*15_000
			}
			b.Run(fmt.Sprintf("%s/part=%v", name, part), func(b *testing.B) {
				var tbuf []int64
				var fbuf []float64
				for b.Loop() {
					var err error
					tbuf, fbuf, err = c.appendFloats(tbuf[:0], fbuf[:0], mint, maxt, name != "gauge")
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.n), "ns/sample")
			})
		}
	}
}

// BenchmarkRiceRun decodes the Rice value sections of benchChunks'
// counters. (A variant that refilled its window before every value, without
// a branch, was 10-25 % slower here: it puts a load on the decoding's
// dependency chain.)
func BenchmarkRiceRun(b *testing.B) {
	for _, name := range []string{"counter3", "counter30", "counter300"} {
		c := benchChunks(b)[name]
		dst := make([]int64, c.n-1)
		k, bb := uint(c.valBits[0]), c.valBits[1:]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				riceRun(dst, bb, k, 0, 0, 0)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(dst)), "ns/value")
		})
	}
}
