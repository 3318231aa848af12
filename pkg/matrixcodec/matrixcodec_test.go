package matrixcodec

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"strconv"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/stats"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

func matrix() promql.Matrix {
	return promql.Matrix{
		{Metric: labels.FromStrings("__name__", "up", "job", "a\"b", "pod", "é"), Floats: []promql.FPoint{
			{T: 1733400000000, F: 1}, {T: 1733400015000, F: math.NaN()}, {T: 1733400030000, F: math.Inf(1)},
			{T: 1733400060000, F: -0.1}, {T: 1733400075123, F: 1e300}, {T: 1733400090000, F: math.Inf(-1)},
		}},
		{Metric: labels.FromStrings("job", "b"), Floats: []promql.FPoint{{T: -5000, F: 5e-324}}},
		{Metric: labels.FromStrings("job", "c")}, // no points
	}
}

// gridMatrix is a range query's answer: every timestamp on a 15 s grid,
// one series at every step, one with gaps (first and last steps missing,
// more than 8 steps so that the bitmap spans bytes), one empty.
func gridMatrix() promql.Matrix {
	const start, step = 1733400000000, 15000
	full := promql.Series{Metric: labels.FromStrings("pod", "full")}
	gaps := promql.Series{Metric: labels.FromStrings("pod", "gaps")}
	for k := range 20 {
		full.Floats = append(full.Floats, promql.FPoint{T: start + int64(k)*step, F: float64(k)})
		if k > 0 && k < 19 && k%3 != 0 {
			gaps.Floats = append(gaps.Floats, promql.FPoint{T: start + int64(k)*step, F: math.NaN()})
		}
	}
	gaps.Floats[4].F = math.Inf(-1)
	return promql.Matrix{gaps, full, {Metric: labels.FromStrings("pod", "none")}}
}

func response(d any) *v1.Response {
	var r v1.Response
	// Status is of an unexported type: set it as the API's JSON does.
	if err := json.Unmarshal([]byte(`{"status":"success","warnings":["w1"],"infos":["i1"]}`), &r); err != nil {
		panic(err)
	}
	r.Data = d
	return &r
}

// TestRoundTripMatchesJSON: what Decode reads is what Prometheus' JSON
// codec writes for the same answer, sample by sample, NaN and ±Inf
// included, and the header carries the status, warnings and infos.
func TestRoundTripMatchesJSON(t *testing.T) {
	t.Run("off the grid", func(t *testing.T) {
		if h := roundTrip(t, matrix()); h.Grid != nil {
			t.Errorf("grid %+v for timestamps a millisecond apart over decades", *h.Grid)
		}
	})
	t.Run("grid", func(t *testing.T) {
		h := roundTrip(t, gridMatrix())
		if h.Grid == nil || *h.Grid != (Grid{Start: 1733400000000, Step: 15000, Steps: 20}) {
			t.Errorf("grid %+v, want the 15 s grid of 20 steps", h.Grid)
		}
	})
	t.Run("one timestamp", func(t *testing.T) {
		m := promql.Matrix{{Metric: labels.FromStrings("a", "1"), Floats: []promql.FPoint{{T: 7, F: 1}}}, {Metric: labels.FromStrings("a", "2"), Floats: []promql.FPoint{{T: 7, F: 2}}}}
		if h := roundTrip(t, m); h.Grid == nil || h.Grid.Steps != 1 {
			t.Errorf("grid %+v, want one step", h.Grid)
		}
	})
	t.Run("no points", func(t *testing.T) {
		roundTrip(t, promql.Matrix{{Metric: labels.FromStrings("a", "1")}})
		roundTrip(t, promql.Matrix{})
	})
}

// TestGridHalvesTheBody: on the grid, a series at every step costs 8 bytes
// a point and one with gaps 8 a point and a bit a step.
func TestGridHalvesTheBody(t *testing.T) {
	m := gridMatrix()
	b, err := (Codec{}).Encode(response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: m}))
	if err != nil {
		t.Fatal(err)
	}
	hlen := int(binary.LittleEndian.Uint32(b[len(Magic):]))
	samples := len(b) - align8(len(Magic)+4+hlen)
	if want := 8*len(m[1].Floats) + 8 + 8*len(m[0].Floats); samples != want {
		t.Errorf("%d bytes of samples, want %d", samples, want)
	}
}

// TestGridIsTheGCDOfEveryDistance: the grid's step is the greatest
// common divisor of every timestamp's distance from the earliest, for
// series that start at different steps, skip steps and are sampled at
// different rates.
func TestGridIsTheGCDOfEveryDistance(t *testing.T) {
	const start = 1733400000000
	for _, c := range []struct {
		times [][]int64 // offsets from start, ms
		step  int64
	}{
		{[][]int64{{0, 15000, 30000}, {15000, 45000}}, 15000},
		{[][]int64{{30000, 60000, 90000}, {0, 60000}}, 30000},
		{[][]int64{{0, 30000, 60000, 75000}}, 15000},
		{[][]int64{{0, 60000}, {20000}}, 20000},
		{[][]int64{{0, 60000, 120000}, {}, {90000, 150000}}, 30000},
		{[][]int64{{45000, 90000}, {0}}, 45000},
		{[][]int64{{0, 1000, 2001}}, 1},
	} {
		var m promql.Matrix
		for i, ts := range c.times {
			s := promql.Series{Metric: labels.FromStrings("i", fmt.Sprint(i))}
			for _, d := range ts {
				s.Floats = append(s.Floats, promql.FPoint{T: start + d, F: float64(d)})
			}
			m = append(m, s)
		}
		g := gridOf(m)
		if g == nil || g.Start != start || g.Step != c.step {
			t.Errorf("%v: grid %+v, want step %d from %d", c.times, g, c.step, int64(start))
		}
		roundTrip(t, m)
	}
	if g := gridOf(promql.Matrix{{Floats: []promql.FPoint{{T: 2}, {T: 1}}}}); g != nil {
		t.Errorf("points out of order: grid %+v, want none", g)
	}
}

// roundTrip encodes m and checks what Decode reads against Prometheus'
// JSON of the same answer.
func roundTrip(t *testing.T, m promql.Matrix) Header {
	t.Helper()
	resp := response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: m})
	var c Codec
	if !c.CanEncode(resp) {
		t.Fatal("CanEncode: false for a float matrix")
	}
	b, err := c.Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	h, got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "success" || h.ResultType != "matrix" || len(h.Warnings) != 1 || h.Warnings[0] != "w1" || len(h.Infos) != 1 || h.Infos[0] != "i1" {
		t.Errorf("header: %+v", h)
	}
	js, err := v1.JSONCodec{}.Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Data struct {
			Result []struct {
				Metric map[string]string
				Values [][2]any
			}
		}
	}
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want.Data.Result) {
		t.Fatalf("%d series, JSON has %d", len(got), len(want.Data.Result))
	}
	for i, w := range want.Data.Result {
		g := got[i]
		if !maps.Equal(g.Metric.Map(), w.Metric) {
			t.Errorf("series %d: metric %v, JSON %v", i, g.Metric, w.Metric)
		}
		if len(g.Values) != len(w.Values) || len(g.Timestamps) != len(w.Values) {
			t.Fatalf("series %d: %d/%d points, JSON %d", i, len(g.Timestamps), len(g.Values), len(w.Values))
		}
		for j, p := range w.Values {
			ts := p[0].(float64)
			v, err := strconv.ParseFloat(p[1].(string), 64)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(float64(g.Timestamps[j])/1000-ts) > 1e-6 {
				t.Errorf("series %d point %d: time %d ms, JSON %v s", i, j, g.Timestamps[j], ts)
			}
			if !(g.Values[j] == v || math.IsNaN(g.Values[j]) && math.IsNaN(v)) {
				t.Errorf("series %d point %d: value %v, JSON %v", i, j, g.Values[j], v)
			}
		}
	}
	// The sample block is 8-byte aligned (browsers read it as Float64Array).
	if len(b)%8 != 0 {
		t.Errorf("body of %d bytes: not a multiple of 8", len(b))
	}
	return h
}

// TestCannotEncode: everything but a successful float matrix stays JSON.
func TestCannotEncode(t *testing.T) {
	hist := promql.Matrix{{Metric: labels.FromStrings("a", "b"), Histograms: []promql.HPoint{{T: 1, H: &histogram.FloatHistogram{Count: 1}}}}}
	qs := stats.QueryStats(&stats.BuiltinStats{})
	errResp := response(nil)
	errResp.Error = "boom"
	for name, r := range map[string]*v1.Response{
		"vector":     response(&v1.QueryData{ResultType: parser.ValueTypeVector, Result: promql.Vector{}}),
		"scalar":     response(&v1.QueryData{ResultType: parser.ValueTypeScalar, Result: promql.Scalar{}}),
		"histograms": response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: hist}),
		"stats":      response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: matrix(), Stats: qs}),
		"not query":  response([]string{"a"}),
		"error":      errResp,
	} {
		if (Codec{}).CanEncode(r) {
			t.Errorf("%s: CanEncode true", name)
		}
		if _, err := (Codec{}).Encode(r); err == nil {
			t.Errorf("%s: Encode did not refuse", name)
		}
	}
}

// TestDecodeRefusesDamage: a truncated or foreign body is an error, not a
// panic or a short answer.
func TestDecodeRefusesDamage(t *testing.T) {
	for _, m := range []promql.Matrix{matrix(), gridMatrix()} {
		b, err := (Codec{}).Encode(response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: m}))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 5, 11, 20, len(b) - 8, len(b) - 1} {
			if _, _, err := Decode(b[:n]); err == nil {
				t.Errorf("Decode of the first %d of %d bytes: no error", n, len(b))
			}
		}
		if _, _, err := Decode(append(append([]byte{}, b...), 0, 0, 0, 0, 0, 0, 0, 0)); err == nil {
			t.Error("Decode with trailing bytes: no error")
		}
	}
	// A bitmap that marks a step more or fewer than the series' points.
	b, err := (Codec{}).Encode(response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: gridMatrix()}))
	if err != nil {
		t.Fatal(err)
	}
	mask := align8(len(Magic) + 4 + int(binary.LittleEndian.Uint32(b[len(Magic):]))) // the first series' bitmap
	for _, flip := range []byte{0x01, 0x02} {                                        // step 0 is not marked, step 1 is
		d := append([]byte{}, b...)
		d[mask] ^= flip
		if _, _, err := Decode(d); err == nil {
			t.Errorf("Decode with bit %#x of the bitmap flipped: no error", flip)
		}
	}
	if _, _, err := Decode([]byte(`{"status":"success"}`)); err == nil {
		t.Error("Decode of JSON: no error")
	}
}

// TestGzipCodec: the +gzip form is Codec's body gzip-compressed, for what
// Codec can encode only, under its own media type.
func TestGzipCodec(t *testing.T) {
	resp := response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: gridMatrix()})
	plain, err := (Codec{}).Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	z, err := (GzipCodec{}).Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("gunzip of the +gzip body differs from Codec's body (%v)", err)
	}
	if _, _, err := Decode(got); err != nil {
		t.Fatal(err)
	}
	// The writers and the bodies they compress are pooled: each answer
	// has the bytes of a new writer's.
	var fresh bytes.Buffer
	zw, err := kgzip.NewWriterLevel(&fresh, GzipLevel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	other := response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: promql.Matrix{{Metric: labels.FromStrings("a", "1"), Floats: []promql.FPoint{{T: 1, F: 2}}}}})
	// A larger body with a bitmap and padding of other bytes, so that a
	// reused buffer holds what a later, smaller one must not keep.
	dirty := gridMatrix()
	for i := range dirty[0].Floats {
		dirty[0].Floats[i].F = -1
	}
	dirty[2].Metric = labels.FromStrings("pod", "a name long enough to move the padding")
	dirty = append(dirty, gridMatrix()...)
	for range 3 {
		if _, err := (GzipCodec{}).Encode(response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: dirty})); err != nil {
			t.Fatal(err)
		}
		if _, err := (GzipCodec{}).Encode(other); err != nil {
			t.Fatal(err)
		}
		again, err := (GzipCodec{}).Encode(resp)
		if err != nil || !bytes.Equal(again, fresh.Bytes()) {
			t.Fatalf("+gzip body from a reused writer differs from a new writer's (%v)", err)
		}
	}
	if ct := (GzipCodec{}).ContentType().String(); ct != MediaTypeGzip {
		t.Errorf("content type %q, want %q", ct, MediaTypeGzip)
	}
	hist := response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: promql.Matrix{{Metric: labels.FromStrings("a", "1"), Histograms: []promql.HPoint{{T: 1, H: &histogram.FloatHistogram{Count: 1}}}}}})
	if (GzipCodec{}).CanEncode(hist) || (Codec{}).CanEncode(hist) {
		t.Error("a native histogram answer is encodable")
	}
}
