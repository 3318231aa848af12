// Package matrixcodec is a binary encoding of range-query answers (matrices
// of float samples) for Prometheus' HTTP API, installed as one of its
// codecs (v1.API.InstallCodec) and chosen by the Accept header. The console
// asks for it: a browser reads its samples as Float64Array views of the
// body, where the JSON answer costs a parse of every timestamp and value
// string and an array per sample. Answers it cannot hold (instant vectors,
// scalars, native histograms, stats or cost requested) are JSON as before;
// a client that does not ask for it never sees it.
//
// The layout, little-endian:
//
//	"LVMATRX1"                    8 bytes, the magic and version
//	H                             uint32, the header's length
//	header                        H bytes of JSON: {"status", "warnings",
//	                              "infos", "resultType": "matrix",
//	                              "series": [{"metric": {…}, "points": n}, …]}
//	padding                       zero bytes to a multiple of 8
//	per series, in header order:  n float64 timestamps (Unix milliseconds),
//	                              then n float64 values (NaN and ±Inf as is)
package matrixcodec

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// MediaType is what a client puts in Accept to get this encoding.
const MediaType = "application/vnd.levitated.matrix"

// Magic starts every body; its last byte is the version.
const Magic = "LVMATRX1"

// Codec encodes successful matrix answers of float samples.
type Codec struct{}

// ContentType implements v1.Codec.
func (Codec) ContentType() v1.MIMEType {
	return v1.MIMEType{Type: "application", SubType: "vnd.levitated.matrix"}
}

// CanEncode implements v1.Codec: a successful range query's matrix without
// native histograms, stats or cost.
func (Codec) CanEncode(resp *v1.Response) bool {
	_, ok := matrixOf(resp)
	return ok
}

func matrixOf(resp *v1.Response) (promql.Matrix, bool) {
	if string(resp.Status) != "success" || resp.Error != "" {
		return nil, false
	}
	d, ok := resp.Data.(*v1.QueryData)
	if !ok || d.ResultType != parser.ValueTypeMatrix || d.Stats != nil || d.Cost != nil {
		return nil, false
	}
	m, ok := d.Result.(promql.Matrix)
	if !ok {
		return nil, false
	}
	for _, s := range m {
		if len(s.Histograms) > 0 {
			return nil, false
		}
	}
	return m, true
}

// Header is the JSON part of a body.
type Header struct {
	Status     string         `json:"status"`
	Warnings   []string       `json:"warnings,omitempty"`
	Infos      []string       `json:"infos,omitempty"`
	ResultType string         `json:"resultType"`
	Series     []SeriesHeader `json:"series"`
}

// SeriesHeader names a series and counts its points.
type SeriesHeader struct {
	Metric labels.Labels `json:"metric"`
	Points int           `json:"points"`
}

// Encode implements v1.Codec.
func (Codec) Encode(resp *v1.Response) ([]byte, error) {
	m, ok := matrixOf(resp)
	if !ok {
		return nil, fmt.Errorf("matrixcodec: not a matrix of float samples")
	}
	h := Header{Status: string(resp.Status), Warnings: resp.Warnings, Infos: resp.Infos, ResultType: string(parser.ValueTypeMatrix), Series: make([]SeriesHeader, len(m))}
	points := 0
	for i, s := range m {
		h.Series[i] = SeriesHeader{Metric: s.Metric, Points: len(s.Floats)}
		points += len(s.Floats)
	}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("matrixcodec: header: %w", err)
	}
	start := align8(len(Magic) + 4 + len(head))
	out := make([]byte, start+16*points)
	copy(out, Magic)
	binary.LittleEndian.PutUint32(out[len(Magic):], uint32(len(head)))
	copy(out[len(Magic)+4:], head)
	off := start
	for _, s := range m {
		for _, p := range s.Floats {
			binary.LittleEndian.PutUint64(out[off:], math.Float64bits(float64(p.T)))
			off += 8
		}
		for _, p := range s.Floats {
			binary.LittleEndian.PutUint64(out[off:], math.Float64bits(p.F))
			off += 8
		}
	}
	return out, nil
}

func align8(n int) int { return (n + 7) &^ 7 }

// Series is a decoded series.
type Series struct {
	Metric     labels.Labels
	Timestamps []int64 // Unix milliseconds
	Values     []float64
}

// Decode reads a body written by Encode (for Go clients and tests).
func Decode(b []byte) (Header, []Series, error) {
	var h Header
	if len(b) < len(Magic)+4 || string(b[:len(Magic)]) != Magic {
		return h, nil, fmt.Errorf("matrixcodec: not a %s body (no %q)", MediaType, Magic)
	}
	n := int(binary.LittleEndian.Uint32(b[len(Magic):]))
	if len(Magic)+4+n > len(b) {
		return h, nil, fmt.Errorf("matrixcodec: header of %d bytes in a body of %d", n, len(b))
	}
	if err := json.Unmarshal(b[len(Magic)+4:len(Magic)+4+n], &h); err != nil {
		return h, nil, fmt.Errorf("matrixcodec: header: %w", err)
	}
	off := align8(len(Magic) + 4 + n)
	out := make([]Series, len(h.Series))
	for i, sh := range h.Series {
		if sh.Points < 0 || off+16*sh.Points > len(b) {
			return h, nil, fmt.Errorf("matrixcodec: series %d: %d points past the body's end", i, sh.Points)
		}
		s := Series{Metric: sh.Metric, Timestamps: make([]int64, sh.Points), Values: make([]float64, sh.Points)}
		for j := range sh.Points {
			s.Timestamps[j] = int64(math.Float64frombits(binary.LittleEndian.Uint64(b[off:])))
			off += 8
		}
		for j := range sh.Points {
			s.Values[j] = math.Float64frombits(binary.LittleEndian.Uint64(b[off:]))
			off += 8
		}
		out[i] = s
	}
	if off != len(b) {
		return h, nil, fmt.Errorf("matrixcodec: %d bytes after the last series", len(b)-off)
	}
	return h, out, nil
}
