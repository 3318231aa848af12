package matrixcodec

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// randomMatrix is a matrix of n series with what can trip an encoder:
// NaN, stale markers, ±Inf, -0, subnormal, tiny and huge floats and those
// at MarshalFloat's switches to exponent form (1e-6, 1e21), timestamps
// negative, with milliseconds and extreme, label values that need
// escaping (quotes, backslashes, control bytes, <>&, invalid UTF-8, U+2028),
// empty label sets, series without points, native histograms, and runs of
// repeated values and more distinct ones than matrixWriter's tables hold.
func randomMatrix(rng *rand.Rand, n int) promql.Matrix {
	odd := []string{"", "a", `q"uote`, `back\slash`, "tab\tnl\n", "ctl\x01\x1f", "<b>&amp;", "bad\xffutf8", "line\u2028sep", "é ünïcode", "\x7f", "/api/v1/" + fmt.Sprint(rng.IntN(50))}
	special := []float64{math.NaN(), math.Float64frombits(value.StaleNaN), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 0, 5e-324, 1e-6, math.Nextafter(1e-6, 0), 1e21, math.Nextafter(1e21, 0), math.MaxFloat64, -math.MaxFloat64, 1e-300, 123456789012345678, 0.1, 1.0 / 3}
	times := []int64{0, -1, -999, -1000, -1001, 1, 999, 1000, 1001, 1796514420000, 1796514420007, 1796514420070, 1796514420700, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	m := make(promql.Matrix, n)
	for i := range m {
		var b labels.ScratchBuilder
		for k := range rng.IntN(5) {
			v := odd[rng.IntN(len(odd))]
			if rng.IntN(2) == 0 {
				v = fmt.Sprintf("%s%d", v, i)
			}
			b.Add(fmt.Sprintf("l%d%s", k, odd[rng.IntN(len(odd))]), v)
		}
		b.Sort()
		s := promql.Series{Metric: b.Labels()}
		npts := rng.IntN(200)
		if rng.IntN(10) == 0 {
			npts = 0
		}
		t := int64(1796514420000) + int64(rng.IntN(10))*60_000
		step := []int64{60_000, 15_000, 1, 1234}[rng.IntN(4)]
		last := 0.0
		for range npts {
			var f float64
			switch r := rng.IntN(10); {
			case r < 3:
				f = last // a repeat
			case r < 4:
				f = special[rng.IntN(len(special))]
			case r < 5:
				f = float64(rng.IntN(20)) / 300 // few distinct rates
			case r < 6:
				f = math.Ldexp(rng.Float64(), rng.IntN(2000)-1000)
			default:
				f = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(30)-15))
			}
			last = f
			tt := t
			if rng.IntN(50) == 0 {
				tt = times[rng.IntN(len(times))]
			}
			s.Floats = append(s.Floats, promql.FPoint{T: tt, F: f})
			t += step
		}
		if rng.IntN(15) == 0 {
			h := &histogram.FloatHistogram{Count: rng.Float64() * 100, Sum: rng.NormFloat64(), Schema: 0, ZeroThreshold: 1e-128, ZeroCount: 1,
				PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []float64{1, 2}}
			s.Histograms = append(s.Histograms, promql.HPoint{T: t, H: h}, promql.HPoint{T: t + 60_000, H: h})
		}
		m[i] = s
	}
	return m
}

// TestAppendMatrixEqualsPrometheus: matrixWriter's bytes are those of
// Prometheus' encoder of a matrix (jsoniter with the codec's
// configuration) on random matrices, and JSONCodec's answers are
// v1.JSONCodec's on 1 to 4 goroutines.
func TestAppendMatrixEqualsPrometheus(t *testing.T) {
	defer func(n int) { parallelPoints = n }(parallelPoints)
	parallelPoints = 1
	rng := rand.New(rand.NewPCG(20, 1))
	api := jsoniter.ConfigCompatibleWithStandardLibrary
	for round := range 60 {
		m := randomMatrix(rng, 1+rng.IntN(60))
		want, err := api.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		// Into a buffer with bytes before the matrix, as runs are not.
		got, err := appendMatrix([]byte("xyz"), m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[3:], want) || string(got[:3]) != "xyz" {
			at := firstDiff(got[3:], want)
			t.Fatalf("round %d: differs at byte %d:\ngot  %.200q\nwant %.200q", round, at, got[3+at:], want[at:])
		}
		resp := response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: m})
		want, err = v1.JSONCodec{}.Encode(resp)
		if err != nil {
			t.Fatal(err)
		}
		procs := 1 + round%4
		old := runtime.GOMAXPROCS(procs)
		got, err = JSONCodec{}.Encode(resp)
		runtime.GOMAXPROCS(old)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			at := firstDiff(got, want)
			t.Fatalf("round %d on %d cores: the answer differs at byte %d:\ngot  %.200q\nwant %.200q", round, procs, at, got[at:], want[at:])
		}
		Recycle(got)
	}
}

// TestAppendMatrixCollisions: values and timestamps that fall into the
// same slot of matrixWriter's tables, alternating, are each written as
// themselves (a slot is keyed by the whole value, not its slot).
func TestAppendMatrixCollisions(t *testing.T) {
	// Keys in the same slot: the slot is the top bits of key × a constant,
	// so search for a few.
	var floats []float64
	var times []int64
	want := slotOf(math.Float64bits(0.5), 12)
	for i := 0; len(floats) < 4; i++ {
		f := 0.5 + float64(i)/1024
		if slotOf(math.Float64bits(f), 12) == want {
			floats = append(floats, f)
		}
	}
	wantT := slotOf(uint64(int64(1796514420000)), 9)
	for i := int64(0); len(times) < 4; i++ {
		ts := 1796514420000 + i*1000
		if slotOf(uint64(ts), 9) == wantT {
			times = append(times, ts)
		}
	}
	s := promql.Series{Metric: labels.FromStrings("a", "b")}
	for i := range 64 {
		s.Floats = append(s.Floats, promql.FPoint{T: times[i*7%4], F: floats[i*3%4]})
	}
	m := promql.Matrix{s, s}
	wantB, err := jsoniter.ConfigCompatibleWithStandardLibrary.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendMatrix(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantB) {
		at := firstDiff(got, wantB)
		t.Fatalf("differs at byte %d:\ngot  %.200q\nwant %.200q", at, got[at:], wantB[at:])
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkEncodeMatrix: a matrix shaped as peer-bench's regex_rate
// answer (1,000 series × 120 steps of a 5-minute rate of counters grown by
// whole numbers), by Prometheus' encoder and by matrixWriter, on one
// goroutine.
func BenchmarkEncodeMatrix(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := make(promql.Matrix, 1000)
	for i := range m {
		m[i].Metric = labels.FromStrings("instance", fmt.Sprintf("10.1.0.%d:8080", i), "job", "api", "method", "POST", "route", "/api/v1/checkout", "service", "checkout", "status", "200")
		for k := range 120 {
			m[i].Floats = append(m[i].Floats, promql.FPoint{T: 1796514420000 + int64(k)*60_000, F: float64(rng.IntN(300)) / 300 * (1 + float64(rng.IntN(3))/14)})
		}
	}
	b.Run("prometheus", func(b *testing.B) {
		for b.Loop() {
			if _, err := jsoniter.ConfigCompatibleWithStandardLibrary.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("matrixWriter", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = appendMatrix(buf[:0], m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
