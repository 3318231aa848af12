package matrixcodec

import (
	"math"
	"strconv"
	"sync"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// matrixWriter appends a matrix as Prometheus' encoder of a matrix
// (web/api/v1's unsafeMarshalMatrixJSON with jsoniter's standard-library
// configuration) writes it, byte for byte, without its per-point calls
// through jsoniter's stream: a series of float samples is written here,
// its label names and values through the same fast path as jsoniter's
// WriteString (and by WriteString itself when a string needs escaping);
// a series with native histograms is written by Prometheus' encoder.
//
// The text of a timestamp or a value already written in the same run is
// copied from where it was written rather than formatted again: a range
// query's steps are the same for every series, and the values repeat (a
// counter that grows by whole numbers has a few rates; the answer of
// 1,000 series × 120 steps of peer-bench's regex_rate has 9,712 distinct
// values in 120,000), where formatting a float the shortest way was most of
// the encoding's time. Two direct-mapped tables of what was written
// (keyed by the timestamp, and by the float's bits: -0 and the NaNs are
// told apart, though they print the same) point back into the buffer.
type matrixWriter struct {
	times  [timeSlots]textSlot
	floats [floatSlots]textSlot
	stream *jsoniter.Stream // for strings that need escaping, and histograms
}

const (
	timeSlots  = 1 << 9
	floatSlots = 1 << 12
)

// textSlot says where the text of key was written: buf[off:off+n]. n is
// 0 in an empty slot (no text is empty).
type textSlot struct {
	key uint64
	off uint32
	n   uint32
}

var matrixWriters = sync.Pool{New: func() any { return new(matrixWriter) }}

// appendMatrix appends m to buf as Prometheus writes a matrix.
func appendMatrix(buf []byte, m promql.Matrix) ([]byte, error) {
	w := matrixWriters.Get().(*matrixWriter)
	defer matrixWriters.Put(w)
	// Offsets point into this buffer only.
	clear(w.times[:])
	clear(w.floats[:])
	buf = append(buf, '[')
	for i, s := range m {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = w.appendSeries(buf, s); err != nil {
			return nil, err
		}
	}
	return append(buf, ']'), nil
}

// appendSeries appends s as web/api/v1's marshalSeriesJSON writes it.
func (w *matrixWriter) appendSeries(buf []byte, s promql.Series) ([]byte, error) {
	if len(s.Histograms) > 0 {
		return w.jsoniter(buf, func(st *jsoniter.Stream) { st.WriteVal(s) })
	}
	buf = append(buf, `{"metric":{`...)
	first := true
	var err error
	s.Metric.Range(func(l labels.Label) {
		if err != nil {
			return
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		if buf, err = w.appendString(buf, l.Name); err != nil {
			return
		}
		buf = append(buf, ':')
		buf, err = w.appendString(buf, l.Value)
	})
	if err != nil {
		return nil, err
	}
	buf = append(buf, '}')
	if len(s.Floats) > 0 {
		buf = append(buf, `,"values":[`...)
		for i, p := range s.Floats {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '[')
			buf = w.appendTimestamp(buf, p.T)
			buf = append(buf, ',', '"')
			buf = w.appendFloat(buf, p.F)
			buf = append(buf, '"', ']')
		}
		buf = append(buf, ']')
	}
	return append(buf, '}'), nil
}

// appendString appends s as jsoniter's Stream.WriteString does: as is
// between quotes when no byte needs escaping (its fast path), else by
// WriteString.
func (w *matrixWriter) appendString(buf []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 31 || c == '"' || c == '\\' {
			return w.jsoniter(buf, func(st *jsoniter.Stream) { st.WriteString(s) })
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"'), nil
}

// jsoniter appends what write writes to a stream of jsoniter's
// standard-library configuration (Prometheus' codec's).
func (w *matrixWriter) jsoniter(buf []byte, write func(*jsoniter.Stream)) ([]byte, error) {
	if w.stream == nil {
		w.stream = jsoniter.ConfigCompatibleWithStandardLibrary.BorrowStream(nil)
	}
	w.stream.SetBuffer(buf)
	w.stream.Error = nil
	write(w.stream)
	buf, err := w.stream.Buffer(), w.stream.Error
	// The stream must not keep the buffer once it goes back to the pool.
	w.stream.SetBuffer(nil)
	return buf, err
}

func slotOf(key uint64, bits int) int {
	return int((key * 0x9e3779b97f4a7c15) >> (64 - bits))
}

// appendTimestamp appends t as util/jsonutil's MarshalTimestamp does:
// seconds, then the milliseconds after a point if there are any.
func (w *matrixWriter) appendTimestamp(buf []byte, t int64) []byte {
	key := uint64(t)
	slot := &w.times[slotOf(key, 9)]
	if slot.n != 0 && slot.key == key {
		return append(buf, buf[slot.off:slot.off+slot.n]...)
	}
	start := len(buf)
	if t < 0 {
		buf = append(buf, '-')
		t = -t
	}
	buf = strconv.AppendInt(buf, t/1000, 10)
	if fraction := t % 1000; fraction != 0 {
		buf = append(buf, '.')
		if fraction < 100 {
			buf = append(buf, '0')
		}
		if fraction < 10 {
			buf = append(buf, '0')
		}
		buf = strconv.AppendInt(buf, fraction, 10)
	}
	w.remember(slot, key, buf, start)
	return buf
}

// appendFloat appends f as util/jsonutil's MarshalFloat does (without the
// quotes): the shortest decimal, in exponent form below 1e-6 and from 1e21
// on, NaN, +Inf and -Inf.
func (w *matrixWriter) appendFloat(buf []byte, f float64) []byte {
	bits := math.Float64bits(f)
	slot := &w.floats[slotOf(bits, 12)]
	if slot.n != 0 && slot.key == bits {
		return append(buf, buf[slot.off:slot.off+slot.n]...)
	}
	start := len(buf)
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	buf = strconv.AppendFloat(buf, f, format, -1, 64)
	w.remember(slot, bits, buf, start)
	return buf
}

// remember notes in slot that buf[start:] is the text of key, if its
// offset fits.
func (w *matrixWriter) remember(slot *textSlot, key uint64, buf []byte, start int) {
	if len(buf) > math.MaxUint32 {
		return
	}
	*slot = textSlot{key: key, off: uint32(start), n: uint32(len(buf) - start)}
}
