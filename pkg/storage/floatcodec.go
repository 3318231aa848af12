package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/levitated/levitated/pkg/xorchunk"
)

// encDecimal is levitated's own encoding of closed float chunks written to
// Pebble: byte-aligned so that Pebble's block compression (zstd) can find
// the regularities that Prometheus' bit-packed XOR encoding hides. See
// FORMAT.md, "Float chunks".
const encDecimal chunkenc.Encoding = 0x81

const (
	tsRegular = 0 // every delta equals the first
	tsRice    = 2 // first delta, then Rice-coded (delta - first delta)

	valXOR         = 1 // byte-aligned XOR with the previous value
	valConstant    = 2 // one value, bit-identical throughout
	valDecimalRice = 3 // integers v*10^k: first, mean delta, Rice-coded (delta - mean)

	maxDecimalScale = 9
)

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// decimalScale returns the smallest k such that v is exactly an integer
// divided by 10^k (the division giving back v's bits), or -1.
func decimalScale(v float64, from int) int {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return -1
	}
	for k := from; k <= maxDecimalScale; k++ {
		m := math.Round(v * pow10[k]) // 0.29*100 is 28.999999999999996
		if math.Abs(m) >= 1<<53 {
			return -1
		}
		if math.Float64bits(m/pow10[k]) == math.Float64bits(v) {
			return k
		}
	}
	return -1
}

// decimalInt is the integer of v at scale k (decimalScale(v, k) == k).
func decimalInt(v float64, k int) int64 { return int64(math.Round(v * pow10[k])) }

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// decimalScratch holds encodeDecimalChunk's buffers from one call to the
// next, for a goroutine that encodes many chunks (a checkpoint encodes
// every chunk of every series: at a million series, buffers made per call
// were a good part of the garbage of ingest).
type decimalScratch struct {
	ts, rs, ds []int64
	vs         []float64
	zs         []uint64
	rb         []byte
	it         chunkenc.Iterator
}

// encodeDecimalChunk re-encodes a float chunk without start timestamps. It
// returns false if the chunk is not one (then it is stored as it is). sc,
// if not nil, lends the buffers; the result never aliases them.
func encodeDecimalChunk(dst []byte, c chunkenc.Chunk, sc *decimalScratch) ([]byte, bool) {
	if c.Encoding() != chunkenc.EncXOR2 && c.Encoding() != chunkenc.EncXOR {
		return dst, false
	}
	n := c.NumSamples()
	if n < 2 {
		return dst, false
	}
	if sc == nil {
		sc = new(decimalScratch)
	}
	ts := sc.ts[:0]
	vs := sc.vs[:0]
	sc.it = c.Iterator(sc.it)
	it := sc.it
	defer func() { sc.ts, sc.vs = ts[:0], vs[:0] }()
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat || it.AtST() != 0 {
			return dst, false
		}
		t, v := it.At()
		ts = append(ts, t)
		vs = append(vs, v)
	}
	if it.Err() != nil || len(ts) != n {
		return dst, false
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	// Timestamps after the first (which is the key's minT).
	d0 := ts[1] - ts[0]
	regular := true
	for i := 2; i < n; i++ {
		if ts[i]-ts[i-1] != d0 {
			regular = false
			break
		}
	}
	if regular {
		dst = append(dst, tsRegular)
		dst = binary.AppendUvarint(dst, uint64(d0))
	} else {
		// The first delta, then the other deltas minus it, Rice-coded:
		// scrape jitter costs a few bits per sample.
		dst = append(dst, tsRice)
		dst = binary.AppendUvarint(dst, uint64(d0))
		rs := sc.rs[:0]
		for i := 2; i < n; i++ {
			rs = append(rs, ts[i]-ts[i-1]-d0)
		}
		sc.rs = rs
		rb := appendRice(sc.rb[:0], rs, &sc.zs)
		sc.rb = rb
		dst = binary.AppendUvarint(dst, uint64(len(rb)))
		dst = append(dst, rb...)
	}
	// Values.
	constant := true
	for _, v := range vs[1:] {
		if math.Float64bits(v) != math.Float64bits(vs[0]) {
			constant = false
			break
		}
	}
	if constant {
		dst = append(dst, valConstant)
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(vs[0])), true
	}
	k := 0
	for _, v := range vs {
		if k = decimalScale(v, k); k < 0 {
			break
		}
	}
	// A value exact at a smaller scale is not always exact at k.
	for i := 0; k >= 0 && i < len(vs); i++ {
		if decimalScale(vs[i], k) != k {
			k = -1
		}
	}
	if k >= 0 {
		// Integers v*10^k (|m| < 2^53, so deltas cannot overflow): the
		// first, then the deltas minus their mean, Rice-coded.
		dst = append(dst, valDecimalRice, byte(k))
		ds := slices.Grow(sc.ds[:0], n-1)[:n-1]
		sc.ds = ds
		prev := decimalInt(vs[0], k)
		dst = binary.AppendVarint(dst, prev)
		var g uint64
		for i, v := range vs[1:] {
			m := decimalInt(v, k)
			ds[i] = m - prev
			g = gcd(g, uint64(max(ds[i], -ds[i])))
			prev = m
		}
		// Deltas share a factor for page-granular memory, byte counts in
		// blocks, counters that step by a fixed amount: divide it out.
		g = max(g, 1)
		var sum float64
		for i := range ds {
			ds[i] /= int64(g)
			sum += float64(ds[i])
		}
		center := int64(math.Round(sum / float64(len(ds))))
		for i := range ds {
			ds[i] -= center
		}
		dst = binary.AppendUvarint(dst, g)
		dst = binary.AppendVarint(dst, center)
		return appendRice(dst, ds, &sc.zs), true
	}
	dst = append(dst, valXOR)
	var prev uint64
	for _, v := range vs {
		x := math.Float64bits(v) ^ prev
		prev = math.Float64bits(v)
		lead, trail := bits.LeadingZeros64(x)/8, bits.TrailingZeros64(x)/8
		if x == 0 {
			dst = append(dst, 0xff)
			continue
		}
		dst = append(dst, byte(lead<<4|trail))
		for b := 7 - lead; b >= trail; b-- {
			dst = append(dst, byte(x>>(8*b)))
		}
	}
	return dst, true
}

var errDecimalChunk = errors.New("decimal chunk")

// decimalChunk is a read-only chunk in encDecimal. Building it parses the
// header; iterators decode the samples as they go, without allocating.
type decimalChunk struct {
	b    []byte
	minT int64
	n    int

	tsMode byte
	d0     int64
	tsBits []byte // Rice section of the timestamps (tsRice)

	valMode  byte
	constant float64
	scale    int
	m0       int64
	factor   int64
	center   int64
	valBits  []byte // Rice section (valDecimalRice) or XOR bytes (valXOR)
}

func newDecimalChunk(b []byte, minT int64) (*decimalChunk, error) {
	c := new(decimalChunk)
	if err := c.parse(b, minT); err != nil {
		return nil, err
	}
	return c, nil
}

// parse sets c to the chunk of b, whose first sample is at minT: its
// header (c retains b).
func (c *decimalChunk) parse(b []byte, minT int64) error {
	*c = decimalChunk{b: b, minT: minT}
	d := decoder{b: b}
	n := d.uvarint("sample count")
	if d.err == nil && (n < 2 || n > math.MaxUint16) {
		d.fail("sample count")
	}
	c.n = int(n)
	c.tsMode = d.byte("timestamp mode")
	c.d0 = int64(d.uvarint("first delta"))
	switch c.tsMode {
	case tsRegular:
	case tsRice:
		l := d.uvarint("timestamp section length")
		c.tsBits = d.bytes("timestamp section", l)
	default:
		d.fail("timestamp mode")
	}
	c.valMode = d.byte("value mode")
	switch c.valMode {
	case valConstant:
		c.constant = d.float64("constant value")
		if d.err == nil && len(d.b) != 0 {
			d.fail("trailing bytes")
		}
	case valDecimalRice:
		c.scale = int(d.byte("decimal scale"))
		if c.scale > maxDecimalScale {
			d.fail("decimal scale")
		}
		c.m0 = d.varint("first value")
		c.factor = int64(d.uvarint("delta factor"))
		c.center = d.varint("mean delta")
		if d.err == nil && c.factor < 1 {
			d.fail("delta factor")
		}
		c.valBits = d.b
	case valXOR:
		c.valBits = d.b
	default:
		d.fail("value mode")
	}
	if d.err != nil {
		return fmt.Errorf("%w: %w", errDecimalChunk, d.err)
	}
	// Timestamps increase: the first delta is positive, and a regular
	// chunk's last timestamp does not overflow.
	span := uint64(math.MaxInt64) - uint64(minT) // room above minT
	last := uint64(1)
	if c.tsMode == tsRegular {
		last = uint64(c.n - 1)
	}
	if c.d0 <= 0 || uint64(c.d0) > span/last {
		return fmt.Errorf("%w: timestamps out of order: %w", errDecimalChunk, errCorruptValue)
	}
	return nil
}

func (c *decimalChunk) Bytes() []byte               { return c.b }
func (c *decimalChunk) Encoding() chunkenc.Encoding { return encDecimal }
func (c *decimalChunk) NumSamples() int             { return c.n }
func (c *decimalChunk) Compact()                    {}
func (c *decimalChunk) Reset([]byte)                { panic("storage: decimal chunks are read-only") }
func (c *decimalChunk) Appender() (chunkenc.Appender, error) {
	return nil, errors.New("storage: decimal chunks are read-only")
}

func (c *decimalChunk) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	di, ok := it.(*decimalIterator)
	if !ok {
		di = &decimalIterator{}
	}
	*di = decimalIterator{c: c, i: -1}
	if c.tsMode == tsRice {
		di.tr, di.tk = riceStream(c.tsBits)
	}
	if c.valMode == valDecimalRice {
		di.vr, di.vk = riceStream(c.valBits)
	}
	return di
}

// riceStream starts reading a Rice section: its parameter byte, then bits.
func riceStream(b []byte) (bitReader, uint) {
	if len(b) == 0 {
		return bitReader{pos: 1}, 0 // reading fails at once
	}
	return bitReader{b: b[1:]}, uint(b[0])
}

type decimalIterator struct {
	c     *decimalChunk
	i     int
	t     int64
	v     float64
	delta int64 // current timestamp delta
	m     int64 // current decimal integer
	prev  uint64
	xpos  int // byte position in the XOR section
	tr    bitReader
	tk    uint
	vr    bitReader
	vk    uint
	err   error
}

func (it *decimalIterator) fail(what string) chunkenc.ValueType {
	if it.err == nil {
		it.err = fmt.Errorf("%w: %s: %w", errDecimalChunk, what, errCorruptValue)
	}
	it.i = it.c.n
	return chunkenc.ValNone
}

func (it *decimalIterator) Next() chunkenc.ValueType {
	c := it.c
	if it.i+1 >= c.n || it.err != nil {
		it.i = c.n
		return chunkenc.ValNone
	}
	it.i++
	// Timestamp.
	switch {
	case it.i == 0:
		it.t = c.minT
	case it.i == 1:
		it.delta = c.d0
		it.t += it.delta
	case c.tsMode == tsRegular:
		it.t += c.d0
	default:
		r, ok := it.tr.rice(it.tk)
		if !ok {
			return it.fail("timestamp bits")
		}
		d := c.d0 + r
		if d <= 0 || it.t > math.MaxInt64-d {
			return it.fail("timestamps out of order")
		}
		it.t += d
	}
	// Value.
	switch c.valMode {
	case valConstant:
		it.v = c.constant
	case valDecimalRice:
		if it.i == 0 {
			it.m = c.m0
		} else {
			r, ok := it.vr.rice(it.vk)
			if !ok {
				return it.fail("value bits")
			}
			it.m += (c.center + r) * c.factor
		}
		it.v = float64(it.m) / pow10[c.scale]
	case valXOR:
		b := c.valBits
		if it.xpos >= len(b) {
			return it.fail("xor bytes")
		}
		h := b[it.xpos]
		it.xpos++
		if h != 0xff {
			lead, trail := int(h>>4), int(h&0x0f)
			if lead+trail > 7 {
				return it.fail("xor header")
			}
			nb := 8 - lead - trail
			if it.xpos+nb > len(b) {
				return it.fail("xor bytes")
			}
			var x uint64
			for k := 0; k < nb; k++ {
				x = x<<8 | uint64(b[it.xpos+k])
			}
			it.xpos += nb
			it.prev ^= x << (8 * trail)
		}
		it.v = math.Float64frombits(it.prev)
	}
	return chunkenc.ValFloat
}

func (it *decimalIterator) Seek(t int64) chunkenc.ValueType {
	if it.i >= 0 && it.i < it.c.n && it.t >= t {
		return chunkenc.ValFloat
	}
	for {
		if it.Next() == chunkenc.ValNone {
			return chunkenc.ValNone
		}
		if it.t >= t {
			return chunkenc.ValFloat
		}
	}
}

func (it *decimalIterator) At() (int64, float64) { return it.t, it.v }
func (it *decimalIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	panic("storage: decimal chunks hold floats")
}
func (it *decimalIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	panic("storage: decimal chunks hold floats")
}
func (it *decimalIterator) AtT() int64  { return it.t }
func (it *decimalIterator) AtST() int64 { return 0 }
func (it *decimalIterator) Err() error  { return it.err }

// openChunk builds a chunk from stored bytes (data is retained). A panic
// of Prometheus' chunk decoder on corrupt bytes becomes an error.
func openChunk(enc chunkenc.Encoding, data []byte, minT int64) (c chunkenc.Chunk, err error) {
	if enc == encDecimal {
		return newDecimalChunk(data, minT)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("chunk decoder: %v: %w", r, errCorruptValue)
		}
	}()
	return chunkenc.FromData(enc, data)
}

// storedChunk returns the encoding and bytes a chunk is written with.
func storedChunk(dst []byte, c chunkenc.Chunk, sc *decimalScratch) (chunkenc.Encoding, []byte) {
	if b, ok := encodeDecimalChunk(dst, c, sc); ok {
		return encDecimal, b
	}
	return c.Encoding(), c.Bytes()
}

// exporter re-encodes chunks for readers that hand them on (the chunk
// querier: remote read and the Thanos StoreAPI), whose clients know only
// Prometheus' standard encodings: levitated's decimal chunks and the
// head's XOR2 chunks become XOR, decoded once and written by the fast
// XOR encoder (xorchunk). XOR2's start timestamps are dropped: XOR cannot
// hold them and neither remote read nor the StoreAPI carries them. Other
// chunks are returned as they are. One exporter serves one goroutine.
type exporter struct {
	enc     xorchunk.Encoder
	scratch []byte
	dec     decimalIterator
}

var exporters = sync.Pool{New: func() any { return new(exporter) }}

// decimal re-encodes a decimal chunk read from data (which need not
// outlive the call) as XOR.
func (x *exporter) decimal(data []byte, minT int64) (chunkenc.Chunk, error) {
	c, err := newDecimalChunk(data, minT)
	if err != nil {
		return nil, err
	}
	it := &x.dec
	c.Iterator(it)
	x.enc.Reset(x.scratch)
	for it.Next() == chunkenc.ValFloat {
		x.enc.Append(it.t, it.v)
	}
	err = it.err
	*it = decimalIterator{} // let go of data
	if err != nil {
		return nil, err
	}
	return x.done()
}

// chunk re-encodes an XOR2 chunk as XOR; other chunks are returned as
// they are.
func (x *exporter) chunk(c chunkenc.Chunk) (chunkenc.Chunk, error) {
	if c.Encoding() != chunkenc.EncXOR2 {
		return c, nil
	}
	data, _, _, err := x.enc.Encode(x.scratch, c.Iterator(nil))
	if err != nil {
		return nil, fmt.Errorf("re-encode XOR2 chunk as XOR: %w", err)
	}
	x.scratch = data[:0]
	return chunkenc.FromData(chunkenc.EncXOR, slices.Clone(data))
}

// done returns the encoded chunk in bytes of its own, keeping the
// encoder's buffer for the next chunk.
func (x *exporter) done() (chunkenc.Chunk, error) {
	data := x.enc.Bytes()
	x.scratch = data[:0]
	return chunkenc.FromData(chunkenc.EncXOR, slices.Clone(data))
}

// Rice coding of signed integers: a parameter byte k, then for each value
// z = zigzag(v): q = z>>k in unary (q one bits and a zero) followed by the
// k low bits of z; a q of riceEscape or more is written as riceEscape one
// bits and z in 64 bits. The bit stream is padded to a byte.
const riceEscape = 32

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(z uint64) int64 { return int64(z>>1) ^ -int64(z&1) }

func riceCost(zs []uint64, k uint) int {
	bits := 0
	for _, z := range zs {
		if q := z >> k; q < riceEscape {
			bits += int(q) + 1 + int(k)
		} else {
			bits += riceEscape + 64
		}
	}
	return bits
}

func appendRice(dst []byte, vs []int64, zbuf *[]uint64) []byte {
	zs := slices.Grow((*zbuf)[:0], len(vs))[:len(vs)]
	*zbuf = zs
	for i, v := range vs {
		zs[i] = zigzag(v)
	}
	best, bestCost := uint(0), riceCost(zs, 0)
	for k := uint(1); k < 63; k++ {
		if c := riceCost(zs, k); c < bestCost {
			best, bestCost = k, c
		}
	}
	dst = append(dst, byte(best))
	var acc uint64
	var nacc uint
	put := func(v uint64, n uint) {
		for n > 0 {
			take := min(n, 64-nacc)
			// the top `take` bits of the low n bits of v
			chunk := (v >> (n - take)) & (1<<take - 1)
			if take == 64 {
				chunk = v >> (n - take)
			}
			acc = acc<<take | chunk
			nacc += take
			n -= take
			if nacc == 64 {
				dst = binary.BigEndian.AppendUint64(dst, acc)
				acc, nacc = 0, 0
			}
		}
	}
	for _, z := range zs {
		q := z >> best
		if q < riceEscape {
			put((1<<q-1)<<1, uint(q)+1)
			put(z, best)
		} else {
			put(1<<riceEscape-1, riceEscape)
			put(z, 64)
		}
	}
	for nacc%8 != 0 {
		put(0, 1)
	}
	for nacc > 0 {
		nacc -= 8
		dst = append(dst, byte(acc>>nacc))
	}
	return dst
}

// rice reads one value written by appendRice with parameter k; false if
// the stream ends first.
func (r *bitReader) rice(k uint) (int64, bool) {
	w := r.peek()
	q := uint(bits.LeadingZeros64(^w))
	var z uint64
	if q < riceEscape {
		r.skip(q + 1)
		z = uint64(q)<<k | r.read(k)
	} else {
		r.skip(riceEscape)
		z = r.read(64)
	}
	return unzigzag(z), r.pos <= 8*len(r.b)
}

// bitReader reads a big-endian bit stream; reads past the end return zero
// bits and leave pos past the end, which rice reports.
type bitReader struct {
	b   []byte
	pos int
}

// peek returns the next 57 or more bits, left-aligned.
func (r *bitReader) peek() uint64 {
	i := r.pos / 8
	var w uint64
	if i+8 <= len(r.b) {
		w = binary.BigEndian.Uint64(r.b[i:])
	} else {
		for j := 0; j < 8; j++ {
			w <<= 8
			if i+j < len(r.b) {
				w |= uint64(r.b[i+j])
			}
		}
	}
	return w << (r.pos % 8)
}

func (r *bitReader) skip(n uint) { r.pos += int(n) }

func (r *bitReader) read(n uint) uint64 {
	if n == 0 {
		return 0
	}
	if n <= 56 {
		v := r.peek() >> (64 - n)
		r.pos += int(n)
		return v
	}
	hi := r.read(n - 32)
	return hi<<32 | r.read(32)
}
