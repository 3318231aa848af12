package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// errCorruptValue is returned when a stored value does not decode.
var errCorruptValue = errors.New("storage: corrupt value")

// maxLabelsEncoded bounds the label count a decoder accepts, so that a
// corrupt length cannot allocate unbounded memory.
const maxLabelsEncoded = 1 << 16

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the primitive encodings of this file from a byte slice and
// remembers the first error, so call sites can read a whole record and check
// once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s: %w", what, errCorruptValue)
	}
	d.b = nil
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(what string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.fail(what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	return string(d.bytes(what, n))
}

func (d *decoder) float64(what string) float64 {
	b := d.bytes(what, 8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

// encodeLabels writes a sorted label set: count, then name and value, each
// length-prefixed.
func encodeLabels(b []byte, ls labels.Labels) []byte {
	b = binary.AppendUvarint(b, uint64(ls.Len()))
	ls.Range(func(l labels.Label) {
		b = appendString(b, l.Name)
		b = appendString(b, l.Value)
	})
	return b
}

func (d *decoder) labels(sb *labels.ScratchBuilder) labels.Labels {
	n := d.uvarint("label count")
	if n > maxLabelsEncoded {
		d.fail("label count")
		return labels.EmptyLabels()
	}
	sb.Reset()
	for i := uint64(0); i < n && d.err == nil; i++ {
		name := d.string("label name")
		value := d.string("label value")
		sb.Add(name, value)
	}
	if d.err != nil {
		return labels.EmptyLabels()
	}
	return sb.Labels()
}

func decodeLabels(b []byte, sb *labels.ScratchBuilder) (labels.Labels, error) {
	d := decoder{b: b}
	ls := d.labels(sb)
	if d.err == nil && len(d.b) != 0 {
		d.fail("labels: trailing bytes")
	}
	return ls, d.err
}

// Chunk values: encoding byte, uvarint(maxT-minT), then the chunk bytes as
// tsdb/chunkenc writes them.
func encodeChunkValue(b []byte, enc chunkenc.Encoding, minT, maxT int64, data []byte) []byte {
	b = append(b, byte(enc))
	b = binary.AppendUvarint(b, uint64(maxT-minT))
	return append(b, data...)
}

// decodeChunkValue returns the chunk in v; data aliases v.
func decodeChunkValue(v []byte, minT int64) (enc chunkenc.Encoding, maxT int64, data []byte, err error) {
	d := decoder{b: v}
	enc = chunkenc.Encoding(d.byte("chunk encoding"))
	span := d.uvarint("chunk time span")
	if d.err != nil {
		return 0, 0, nil, d.err
	}
	if !chunkenc.IsValidEncoding(enc) && enc != encDecimal {
		return 0, 0, nil, fmt.Errorf("chunk encoding %d: %w", enc, errCorruptValue)
	}
	if span > math.MaxInt64 || minT > math.MaxInt64-int64(span) {
		return 0, 0, nil, fmt.Errorf("chunk time span %d: %w", span, errCorruptValue)
	}
	if len(d.b) < 2 {
		return 0, 0, nil, fmt.Errorf("chunk of %d bytes: %w", len(d.b), errCorruptValue)
	}
	return enc, minT + int64(span), d.b, nil
}

// WAL records. A record is the samples of one committed appender:
//
//	version byte (1)
//	repeated: flags byte, zigzag(sid - prev sid), zigzag(t - prev t),
//	          [zigzag(t - st) if flagST], value
//
// where the low two bits of flags give the value type (float: 8 bytes
// little-endian IEEE 754 bits; histogram and float histogram: uvarint length
// and the prompb.Histogram protobuf).
const (
	walVersion = 1

	walTypeFloat          = 0
	walTypeHistogram      = 1
	walTypeFloatHistogram = 2
	walTypeMask           = 0x03
	walFlagST             = 0x04
)

type walEncoder struct {
	buf     []byte
	prevSID uint64
	prevT   int64
	hbuf    []byte
}

func (e *walEncoder) reset() {
	e.buf = append(e.buf[:0], walVersion)
	e.prevSID, e.prevT = 0, 0
}

func (e *walEncoder) add(sid uint64, s sample) error {
	flags := byte(walTypeFloat)
	switch {
	case s.h != nil:
		flags = walTypeHistogram
	case s.fh != nil:
		flags = walTypeFloatHistogram
	}
	if s.st != 0 {
		flags |= walFlagST
	}
	e.buf = append(e.buf, flags)
	e.buf = binary.AppendVarint(e.buf, int64(sid-e.prevSID))
	e.buf = binary.AppendVarint(e.buf, s.t-e.prevT)
	e.prevSID, e.prevT = sid, s.t
	if s.st != 0 {
		e.buf = binary.AppendVarint(e.buf, s.t-s.st)
	}
	switch flags & walTypeMask {
	case walTypeFloat:
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(s.v))
	case walTypeHistogram:
		hp := prompb.FromIntHistogram(0, s.h)
		return e.appendProto(&hp)
	case walTypeFloatHistogram:
		hp := prompb.FromFloatHistogram(0, s.fh)
		return e.appendProto(&hp)
	}
	return nil
}

func (e *walEncoder) appendProto(hp *prompb.Histogram) error {
	n := hp.Size()
	if cap(e.hbuf) < n {
		e.hbuf = make([]byte, n)
	}
	e.hbuf = e.hbuf[:n]
	if _, err := hp.MarshalToSizedBuffer(e.hbuf); err != nil {
		return fmt.Errorf("encode histogram: %w", err)
	}
	e.buf = binary.AppendUvarint(e.buf, uint64(n))
	e.buf = append(e.buf, e.hbuf...)
	return nil
}

// decodeWAL calls fn for each sample of a record, in order.
func decodeWAL(rec []byte, fn func(sid uint64, s sample) error) error {
	d := decoder{b: rec}
	if v := d.byte("WAL version"); d.err == nil && v != walVersion {
		return fmt.Errorf("WAL record version %d: %w", v, errCorruptValue)
	}
	var sid uint64
	var t int64
	for d.err == nil && len(d.b) > 0 {
		flags := d.byte("WAL flags")
		sid += uint64(d.varint("WAL series"))
		t += d.varint("WAL time")
		s := sample{t: t}
		if flags&walFlagST != 0 {
			s.st = t - d.varint("WAL start time")
		}
		if flags&^(walTypeMask|walFlagST) != 0 {
			d.fail("WAL flags")
		}
		switch flags & walTypeMask {
		case walTypeFloat:
			s.v = d.float64("WAL value")
		case walTypeHistogram, walTypeFloatHistogram:
			n := d.uvarint("WAL histogram length")
			b := d.bytes("WAL histogram", n)
			if d.err != nil {
				break
			}
			var hp prompb.Histogram
			if err := hp.Unmarshal(b); err != nil {
				return fmt.Errorf("decode WAL histogram: %w: %w", err, errCorruptValue)
			}
			if flags&walTypeMask == walTypeHistogram {
				if hp.IsFloatHistogram() {
					return fmt.Errorf("decode WAL histogram: float counts in an integer histogram: %w", errCorruptValue)
				}
				s.h = hp.ToIntHistogram()
			} else {
				s.fh = hp.ToFloatHistogram()
			}
		default:
			d.fail("WAL value type")
		}
		if d.err != nil {
			break
		}
		if err := fn(sid, s); err != nil {
			return err
		}
	}
	return d.err
}

// Exemplar values: labels, value bits (8 bytes little-endian), and a flag
// byte that is 1 when the exemplar carried its own timestamp.
func encodeExemplar(b []byte, e exemplar.Exemplar) []byte {
	b = encodeLabels(b, e.Labels)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Value))
	if e.HasTs {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeExemplar(v []byte, t int64, sb *labels.ScratchBuilder) (exemplar.Exemplar, error) {
	d := decoder{b: v}
	e := exemplar.Exemplar{Ts: t}
	e.Labels = d.labels(sb)
	e.Value = d.float64("exemplar value")
	e.HasTs = d.byte("exemplar flags") == 1
	if d.err == nil && len(d.b) != 0 {
		d.fail("exemplar: trailing bytes")
	}
	return e, d.err
}

// Metadata values: count, then type, unit and help of each distinct
// metadata seen for the metric family, oldest first.
func encodeMetadata(b []byte, ms []metadata.Metadata) []byte {
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = appendString(b, string(m.Type))
		b = appendString(b, m.Unit)
		b = appendString(b, m.Help)
	}
	return b
}

func decodeMetadata(v []byte) ([]metadata.Metadata, error) {
	d := decoder{b: v}
	n := d.uvarint("metadata count")
	if n > maxMetadataPerFamily {
		d.fail("metadata count")
	}
	var ms []metadata.Metadata
	for i := uint64(0); i < n && d.err == nil; i++ {
		var m metadata.Metadata
		m.Type = modelMetricType(d.string("metadata type"))
		m.Unit = d.string("metadata unit")
		m.Help = d.string("metadata help")
		ms = append(ms, m)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("metadata: trailing bytes")
	}
	return ms, d.err
}

// sample is one value of any type with its timestamps.
type sample struct {
	st, t int64
	v     float64
	h     *histogram.Histogram
	fh    *histogram.FloatHistogram
}

func (s sample) valueType() chunkenc.ValueType {
	switch {
	case s.h != nil:
		return chunkenc.ValHistogram
	case s.fh != nil:
		return chunkenc.ValFloatHistogram
	}
	return chunkenc.ValFloat
}

// Series records: the first and newest partitions holding samples of the
// series (offset-binary int32 each), then its labels.
func encodeSeriesRecord(b []byte, firstDay, lastDay int32, ls labels.Labels) []byte {
	b = putInt32(b, firstDay)
	b = putInt32(b, lastDay)
	return encodeLabels(b, ls)
}

// encodeInternedSeriesRecord is encodeSeriesRecord of a series whose
// labels are enc in syms, without building them.
func encodeInternedSeriesRecord(b []byte, firstDay, lastDay int32, syms *symbolTable, enc string) []byte {
	b = putInt32(b, firstDay)
	b = putInt32(b, lastDay)
	return syms.appendRecordLabels(b, enc)
}

func decodeSeriesRecord(v []byte, sb *labels.ScratchBuilder) (firstDay, lastDay int32, ls labels.Labels, err error) {
	if len(v) < 8 {
		return 0, 0, labels.EmptyLabels(), fmt.Errorf("series record of %d bytes: %w", len(v), errCorruptValue)
	}
	firstDay, lastDay = getInt32(v), getInt32(v[4:])
	ls, err = decodeLabels(v[8:], sb)
	return firstDay, lastDay, ls, err
}

// iterateChunk counts a chunk's samples, turning a decoder panic into an
// error; used to validate untrusted chunks.
func iterateChunk(c chunkenc.Chunk) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("chunk decoder: %v: %w", r, errCorruptValue)
		}
	}()
	it := c.Iterator(nil)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		switch vt {
		case chunkenc.ValHistogram:
			it.AtHistogram(nil)
		case chunkenc.ValFloatHistogram:
			it.AtFloatHistogram(nil)
		default:
			it.At()
		}
		n++
	}
	return n, it.Err()
}
