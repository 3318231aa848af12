package matrixcodec

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"

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
	resp := response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: matrix()})
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
		if g.Metric.Map()["job"] != w.Metric["job"] || len(g.Metric.Map()) != len(w.Metric) {
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
	b, err := (Codec{}).Encode(response(&v1.QueryData{ResultType: parser.ValueTypeMatrix, Result: matrix()}))
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
	if _, _, err := Decode([]byte(`{"status":"success"}`)); err == nil {
		t.Error("Decode of JSON: no error")
	}
}
