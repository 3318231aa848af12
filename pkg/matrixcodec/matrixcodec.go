// Package matrixcodec is a binary encoding of range-query answers (matrices
// of float samples) for Prometheus' HTTP API, installed as one of its
// codecs (v1.API.InstallCodec) and chosen by the Accept header. The console
// asks for it: a browser reads its samples as Float64Array views of the
// body, where the JSON answer costs a parse of every timestamp and value
// string and an array per sample. Answers it cannot hold (instant vectors,
// scalars, native histograms, stats or cost requested) are JSON as before;
// a client that does not ask for it never sees it.
//
// A range query's timestamps lie on its step grid, so the body sends the
// grid once and, per series, only which of its steps are present: half the
// bytes of a timestamp per sample. The layout, little-endian:
//
//	"LVMATRX2"                    8 bytes, the magic and version
//	H                             uint32, the header's length
//	header                        H bytes of JSON: {"status", "warnings",
//	                              "infos", "resultType": "matrix",
//	                              "grid": {"start", "step", "steps"},
//	                              "series": [{"metric": {…}, "points": n}, …]}
//	padding                       zero bytes to a multiple of 8
//	per series, in header order:  with a grid, and n == steps: n float64
//	                              values, one per step; with a grid and
//	                              0 < n < steps: a bitmap of the steps present
//	                              (bit k of byte k/8 for step k, at time
//	                              start + k*step), zero-padded to a
//	                              multiple of 8 bytes, then the n values;
//	                              without a grid: n float64 timestamps,
//	                              then n float64 values
//
// Times are Unix milliseconds, values float64 (NaN and ±Inf as is). The
// grid is the coarsest one every timestamp lies on (start: the earliest,
// step: the greatest common divisor of the distances from it); an answer
// with no points, or whose grid would have more than MaxGridSteps steps
// (Prometheus allows 11,000 points per series), has none.
//
// JSONCodec is Prometheus' JSON codec with the same bytes, which encodes a
// large matrix on all cores.
package matrixcodec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// MediaType is what a client puts in Accept to get this encoding.
const MediaType = "application/vnd.levitated.matrix"

// Magic starts every body; its last byte is the version.
const Magic = "LVMATRX2"

// MaxGridSteps bounds the steps of a grid (and so a series' bitmap).
const MaxGridSteps = 11000

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
	Grid       *Grid          `json:"grid,omitempty"`
	Series     []SeriesHeader `json:"series"`
}

// Grid is the step grid of every timestamp of a body: step k is at
// Start + k*Step, for k < Steps.
type Grid struct {
	Start int64 `json:"start"`
	Step  int64 `json:"step"`
	Steps int   `json:"steps"`
}

// gridOf is the coarsest grid m's timestamps lie on, or nil (no points, a
// series not in increasing time order, or more than MaxGridSteps steps).
func gridOf(m promql.Matrix) *Grid {
	start, end, any := int64(math.MaxInt64), int64(math.MinInt64), false
	for _, s := range m {
		for i, p := range s.Floats {
			if i > 0 && p.T <= s.Floats[i-1].T {
				return nil
			}
		}
		if n := len(s.Floats); n > 0 {
			start, end, any = min(start, s.Floats[0].T), max(end, s.Floats[n-1].T), true
		}
	}
	if !any {
		return nil
	}
	// The divisor of every distance from start: that of each series' first
	// distance and of the distances between its consecutive points (the
	// others are sums of these). Those are mostly the step itself, which
	// needs no division: the gcd of every distance from start divided
	// 240,000 times for the console's 500-series graph, a third of the
	// encoding's time.
	var step int64
	for _, s := range m {
		if len(s.Floats) == 0 {
			continue
		}
		step = gcd(step, s.Floats[0].T-start)
		for i := 1; i < len(s.Floats); i++ {
			if d := s.Floats[i].T - s.Floats[i-1].T; d != step {
				step = gcd(step, d)
			}
		}
	}
	if step == 0 { // one timestamp
		return &Grid{Start: start, Step: 1, Steps: 1}
	}
	if (end-start)/step >= MaxGridSteps {
		return nil
	}
	return &Grid{Start: start, Step: step, Steps: int((end-start)/step) + 1}
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// maskBytes is the size of a series' bitmap of steps, padded.
func (g *Grid) maskBytes() int { return align8((g.Steps + 7) / 8) }

// SeriesHeader names a series and counts its points.
type SeriesHeader struct {
	Metric labels.Labels `json:"metric"`
	Points int           `json:"points"`
}

// Encode implements v1.Codec.
func (Codec) Encode(resp *v1.Response) ([]byte, error) {
	return encode(resp, nil)
}

// encode appends resp's body to dst[:0] (grown if short).
func encode(resp *v1.Response, dst []byte) ([]byte, error) {
	m, ok := matrixOf(resp)
	if !ok {
		return nil, fmt.Errorf("matrixcodec: not a matrix of float samples")
	}
	h := Header{Status: string(resp.Status), Warnings: resp.Warnings, Infos: resp.Infos, ResultType: string(parser.ValueTypeMatrix), Grid: gridOf(m), Series: make([]SeriesHeader, len(m))}
	size := 0
	for i, s := range m {
		h.Series[i] = SeriesHeader{Metric: s.Metric, Points: len(s.Floats)}
		size += seriesBytes(h.Grid, len(s.Floats))
	}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("matrixcodec: header: %w", err)
	}
	start := align8(len(Magic) + 4 + len(head))
	var out []byte
	if cap(dst) >= start+size {
		out = dst[:start+size]
		clear(out[len(Magic)+4+len(head) : start]) // the padding
	} else {
		out = make([]byte, start+size)
	}
	copy(out, Magic)
	binary.LittleEndian.PutUint32(out[len(Magic):], uint32(len(head)))
	copy(out[len(Magic)+4:], head)
	off := start
	g := h.Grid
	for _, s := range m {
		switch {
		case g == nil:
			for _, p := range s.Floats {
				binary.LittleEndian.PutUint64(out[off:], math.Float64bits(float64(p.T)))
				off += 8
			}
		case len(s.Floats) > 0 && len(s.Floats) < g.Steps:
			mask := out[off : off+g.maskBytes()]
			clear(mask)
			for _, p := range s.Floats {
				k := (p.T - g.Start) / g.Step
				mask[k/8] |= 1 << (k % 8)
			}
			off += len(mask)
		}
		for _, p := range s.Floats {
			binary.LittleEndian.PutUint64(out[off:], math.Float64bits(p.F))
			off += 8
		}
	}
	return out, nil
}

// seriesBytes is the size of a series of n points in a body with grid g.
func seriesBytes(g *Grid, n int) int {
	switch {
	case g == nil:
		return 16 * n
	case n > 0 && n < g.Steps:
		return g.maskBytes() + 8*n
	}
	return 8 * n
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
	g := h.Grid
	if g != nil && (g.Steps < 1 || g.Steps > MaxGridSteps || g.Step < 1) {
		return h, nil, fmt.Errorf("matrixcodec: grid of %d steps of %d ms", g.Steps, g.Step)
	}
	out := make([]Series, len(h.Series))
	for i, sh := range h.Series {
		if sh.Points < 0 || g != nil && sh.Points > g.Steps || off+seriesBytes(g, sh.Points) > len(b) {
			return h, nil, fmt.Errorf("matrixcodec: series %d: %d points past the body's end", i, sh.Points)
		}
		s := Series{Metric: sh.Metric, Timestamps: make([]int64, sh.Points), Values: make([]float64, sh.Points)}
		switch {
		case g == nil:
			for j := range sh.Points {
				s.Timestamps[j] = int64(math.Float64frombits(binary.LittleEndian.Uint64(b[off:])))
				off += 8
			}
		case sh.Points == 0:
		case sh.Points == g.Steps:
			for j := range sh.Points {
				s.Timestamps[j] = g.Start + int64(j)*g.Step
			}
		default:
			mask := b[off : off+g.maskBytes()]
			j := 0
			for k := range g.Steps {
				if mask[k/8]&(1<<(k%8)) != 0 {
					if j == sh.Points {
						return h, nil, fmt.Errorf("matrixcodec: series %d: more steps marked than its %d points", i, sh.Points)
					}
					s.Timestamps[j] = g.Start + int64(k)*g.Step
					j++
				}
			}
			if j != sh.Points {
				return h, nil, fmt.Errorf("matrixcodec: series %d: %d steps marked for %d points", i, j, sh.Points)
			}
			off += len(mask)
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

// MediaTypeGzip is what a client puts in Accept to get the same body
// compressed with gzip by the codec itself (Content-Type
// application/vnd.levitated.matrix+gzip), which the client decompresses.
// HTTP's own Content-Encoding is decoded by a browser's network process,
// which then moves the whole decompressed body into the page; this form
// crosses that boundary compressed (for the console's 500-series graph:
// 0.19 MB instead of 1.97) and the page inflates it (DecompressionStream).
const MediaTypeGzip = MediaType + "+gzip"

// GzipCodec encodes what Codec does, gzip-compressed, with klauspost's
// deflate at level 3 (its fastest levels with a match finder that reaches
// back across the window; bench/RESULTS.md, "The console's graph: the
// server's side"): the values are mostly incompressible bits; the repeated
// grid, labels and values are what it saves.
type GzipCodec struct{}

// ContentType implements v1.Codec.
func (GzipCodec) ContentType() v1.MIMEType {
	return v1.MIMEType{Type: "application", SubType: "vnd.levitated.matrix+gzip"}
}

// CanEncode implements v1.Codec: what Codec can encode.
func (GzipCodec) CanEncode(resp *v1.Response) bool { return Codec{}.CanEncode(resp) }

// GzipLevel is GzipCodec's compression level (klauspost/compress/gzip).
const GzipLevel = 3

// Encode implements v1.Codec.
func (GzipCodec) Encode(resp *v1.Response) ([]byte, error) {
	var raw []byte
	rb, _ := rawBufs.Get().(*[]byte)
	if rb != nil {
		raw = *rb
	}
	b, err := encode(resp, raw)
	if err != nil {
		return nil, err
	}
	defer func() {
		// Kept for the next answer unless unusually large.
		if cap(b) <= maxPooledRaw {
			rawBufs.Put(&b)
		}
	}()
	var out bytes.Buffer
	out.Grow(len(b) / 8)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&out)
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("matrixcodec: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("matrixcodec: gzip: %w", err)
	}
	zw.Reset(nil)
	return out.Bytes(), nil
}

// rawBufs hold the uncompressed bodies GzipCodec compresses, reused from
// answer to answer (a fresh one of 2 MB, zeroed, for every answer of the
// console's 500-series graph), up to maxPooledRaw bytes each.
var rawBufs sync.Pool // of *[]byte

const maxPooledRaw = 32 << 20

// gzipWriters hold GzipCodec's writers, which Reset makes write what a new
// one would: a new writer per answer is some hundred KB of compressor
// state for the collector.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, GzipLevel) // a valid level: no error
	return zw
}}
