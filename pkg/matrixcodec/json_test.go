package matrixcodec

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/stats"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// TestJSONCodecEqualsPrometheus: JSONCodec's bytes are v1.JSONCodec's for
// every kind of answer, its matrices cut into runs on 1 to 5 goroutines,
// or encoded whole into a lent buffer (encodeLent).
func TestJSONCodecEqualsPrometheus(t *testing.T) {
	defer func(n int) { parallelPoints = n }(parallelPoints)
	for _, pp := range []int{1, math.MaxInt} {
		parallelPoints = pp
		testJSONCodecEqualsPrometheus(t)
	}
}

func testJSONCodecEqualsPrometheus(t *testing.T) {
	big := promql.Matrix{}
	for i := range 37 {
		s := promql.Series{Metric: labels.FromStrings("__name__", "x", "i", fmt.Sprint(i), "trap", `"result":[]`)}
		for k := range i % 9 { // some without points
			s.Floats = append(s.Floats, promql.FPoint{T: 1733400000000 + int64(k)*60_000 + int64(i), F: float64(i) / float64(k+1)})
		}
		big = append(big, s)
	}
	big[3].Floats = append(big[3].Floats, promql.FPoint{T: 1733400600000, F: math.NaN()}, promql.FPoint{T: 1733400660000, F: math.Inf(-1)})
	withHist := append(promql.Matrix{}, big[:5]...)
	withHist[2] = promql.Series{Metric: labels.FromStrings("h", "1"), Histograms: []promql.HPoint{{T: 1733400000000, H: &histogram.FloatHistogram{Count: 3, Sum: 1.5}}}}
	st := stats.NewQueryStats(&stats.Statistics{Timers: stats.NewQueryTimers(), Samples: stats.NewQuerySamples(false)})
	for name, d := range map[string]any{
		"matrix":     &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: big},
		"two series": &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: big[7:9]},
		"one series": &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: big[3:4]},
		"histograms": &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: withHist},
		"stats":      &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: big, Stats: st},
		"empty":      &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: promql.Matrix{}},
		"grid":       &v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: gridMatrix()},
		"vector":     &v1.QueryData{ResultType: parser.ValueTypeVector, Result: promql.Vector{{Metric: labels.FromStrings("a", "b"), T: 5, F: 1}}},
		"scalar":     &v1.QueryData{ResultType: parser.ValueTypeScalar, Result: promql.Scalar{T: 5, V: 2}},
		"series":     []labels.Labels{labels.FromStrings("a", "b")},
		"no data":    nil,
	} {
		for _, procs := range []int{1, 2, 3, 5} {
			old := runtime.GOMAXPROCS(procs)
			resp := response(d)
			want, err := v1.JSONCodec{}.Encode(resp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := JSONCodec{}.Encode(resp)
			runtime.GOMAXPROCS(old)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(want, got) {
				t.Fatalf("%s on %d: got\n%s\nwant\n%s", name, procs, got, want)
			}
		}
	}
}

// TestRecycle: an answer given back is reused, once, and the answers
// encoded into reused buffers are still v1.JSONCodec's; a slice Encode did
// not return is left alone.
func TestRecycle(t *testing.T) {
	defer func(n int) { parallelPoints = n }(parallelPoints)
	parallelPoints = 1
	old := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(old)
	m := gridMatrix()
	if len(m) < 2 {
		t.Fatal("gridMatrix has fewer than two series")
	}
	resp := response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: m})
	want, err := v1.JSONCodec{}.Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	Recycle(nil)
	Recycle(make([]byte, 10)) // not an answer
	Recycle(want)
	for range 20 {
		a, err := JSONCodec{}.Encode(resp)
		if err != nil {
			t.Fatal(err)
		}
		// Given back twice: it must not go into the pool twice, or two
		// answers would share it.
		Recycle(a)
		Recycle(a)
		b, err := JSONCodec{}.Encode(resp)
		if err != nil {
			t.Fatal(err)
		}
		c, err := JSONCodec{}.Encode(resp)
		if err != nil {
			t.Fatal(err)
		}
		if &b[:1][0] == &c[:1][0] {
			t.Fatal("two answers in one buffer")
		}
		if !bytes.Equal(b, want) || !bytes.Equal(c, want) {
			t.Fatalf("an answer in a reused buffer differs:\n%s\nwant\n%s", b, want)
		}
		Recycle(b)
		Recycle(c)
	}
}
