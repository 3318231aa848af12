package storage

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// Reading a series' float samples in bulk (AppendFloats): a decimal chunk
// is decoded whole, in one loop per section, straight into the caller's
// slices, instead of sample by sample through Prometheus' series iterator
// and decimalIterator (three interface calls and a switch on the modes per
// sample). The samples are decimalIterator's, bit for bit.

// riceReader reads appendRice's bit stream through a 64-bit window that is
// refilled eight bytes at a time. Past the end of the stream it reads zero
// bits; ok tells whether a read went past the end.
type riceReader struct {
	b   []byte
	pos int    // next byte to load; past len(b) counts the zero bytes read
	w   uint64 // the next bits, left-aligned; w's low 64-n bits are the stream's next bits or zero
	n   uint   // bits of w that are the stream's
}

// refill makes n at least 56.
func (r *riceReader) refill() {
	if r.pos+8 <= len(r.b) {
		// The bits after the n+8k taken stay in w: they are the stream's,
		// at their place, and the next refill puts the same bits there.
		r.w |= binary.BigEndian.Uint64(r.b[r.pos:]) >> r.n
		k := (63 - r.n) >> 3
		r.pos += int(k)
		r.n += k << 3
		return
	}
	for r.n <= 56 {
		if r.pos < len(r.b) {
			r.w |= uint64(r.b[r.pos]) << (56 - r.n)
		}
		r.pos++
		r.n += 8
	}
}

// ok reports whether the reads so far were inside the stream.
func (r *riceReader) ok() bool { return 8*r.pos-int(r.n) <= 8*len(r.b) }

// bits reads n <= 56 bits.
func (r *riceReader) bits(n uint) uint64 {
	if r.n < n {
		r.refill()
	}
	v := r.w >> (64 - n) // zero when n is 0
	r.w <<= n
	r.n -= n
	return v
}

// rice reads one value written by appendRice with parameter k.
func (r *riceReader) rice(k uint) int64 {
	if r.n < 56 {
		r.refill()
	}
	q := uint(bits.LeadingZeros64(^r.w))
	var z uint64
	if q < riceEscape {
		r.bits(q + 1)
		z = uint64(q)<<k | r.long(k)
	} else {
		r.bits(riceEscape)
		z = r.long(64)
	}
	return unzigzag(z)
}

// long reads n bits, the last 64 of them.
func (r *riceReader) long(n uint) uint64 {
	if n <= 56 {
		return r.bits(n)
	}
	hi := r.long(n - 32) // n above 64 in a corrupt section: as bitReader.read
	return hi<<32 | r.bits(32)
}

// riceDecode decodes len(dst) values of a Rice section (its parameter
// byte, then bits) into dst; false if the section ends first. riceRun
// decodes the values as long as the window can be refilled with 8-byte
// loads; the last bytes are copied into a buffer padded with zeros for it
// to go on; riceReader does what is left (a stream read past its end).
func riceDecode(dst []int64, section []byte) bool {
	if len(dst) == 0 {
		return true
	}
	if len(section) == 0 {
		return false
	}
	k := uint(section[0])
	b := section[1:]
	if k > 62 {
		// Not appendRice's: the reader reads what decimalIterator does.
		r := riceReader{b: b}
		for j := range dst {
			dst[j] = r.rice(k)
		}
		return r.ok()
	}
	return riceDecodeFrom(dst, b, k, 0, 0, 0)
}

// riceDecodeFrom is riceDecode of parameter k <= 62 going on from the
// reader state w, n, pos over the section's bits b (as riceRun's).
func riceDecodeFrom(dst []int64, b []byte, k uint, w uint64, n uint, pos int) bool {
	i, w, n, pos := riceRun(dst, b, k, w, n, pos)
	if i < len(dst) && pos+8 > len(b) {
		var tail [32]byte
		copy(tail[:], b[pos:])
		var j, tpos int
		j, w, n, tpos = riceRun(dst[i:], tail[:], k, w, n, 0)
		i += j
		pos += tpos
	}
	if i < len(dst) {
		r := riceReader{b: b, pos: pos, w: w, n: n}
		for j := i; j < len(dst); j++ {
			dst[j] = r.rice(k)
		}
		return r.ok()
	}
	return 8*pos-int(n) <= 8*len(b)
}

// riceRun decodes values of parameter k <= 62 into dst from the reader
// state w, n, pos over b (as riceReader's), as long as a value's bits are
// in the window (a quotient below the escape) and the window can be
// refilled with an 8-byte load; it returns how many and the state. The
// state stays in registers.
func riceRun(dst []int64, b []byte, k uint, w uint64, n uint, pos int) (int, uint64, uint, int) {
	k &= 63
	sh := (63 - k) & 63
	for i := range dst {
		if n < 56 {
			if pos+8 > len(b) {
				return i, w, n, pos
			}
			// As riceReader.refill.
			w |= binary.BigEndian.Uint64(b[pos:]) >> n
			c := (63 - n) >> 3
			pos += int(c)
			n += c << 3
		}
		q := uint(bits.LeadingZeros64(^w))
		l := q + 1 + k
		if q >= riceEscape || l > n {
			return i, w, n, pos
		}
		// The k bits after the quotient's ones and zero: the top k+1
		// bits once the ones are shifted out, the zero bit being 0.
		z := uint64(q)<<k | w<<(q&63)>>sh
		w <<= l & 63
		n -= l
		dst[i] = int64(z>>1) ^ -int64(z&1)
	}
	return len(dst), w, n, pos
}

// decimalRun is riceRun for a decimal value section: each value's delta r
// is added to m as (step + r) * factor — written stepFactor + r*factor,
// the same in two's complement — and float64(m) is written to out in the
// same loop: the decoding's dependency chain (the window's bits) leaves
// the core room for the rest. It returns how many it wrote, the reader's
// state and m.
func decimalRun(out []float64, b []byte, k uint, w uint64, n uint, pos int, m, stepFactor, factor int64) (int, uint64, uint, int, int64) {
	k &= 63
	sh := (63 - k) & 63
	for i := range out {
		if n < 56 {
			if pos+8 > len(b) {
				return i, w, n, pos, m
			}
			w |= binary.BigEndian.Uint64(b[pos:]) >> n
			c := (63 - n) >> 3
			pos += int(c)
			n += c << 3
		}
		q := uint(bits.LeadingZeros64(^w))
		l := q + 1 + k
		if q >= riceEscape || l > n {
			return i, w, n, pos, m
		}
		z := uint64(q)<<k | w<<(q&63)>>sh
		w <<= l & 63
		n -= l
		m += stepFactor + (int64(z>>1)^-int64(z&1))*factor
		out[i] = float64(m)
	}
	return len(out), w, n, pos, m
}

// decimalValues writes the values of samples [0, len(out)) of a decimal
// value section to out: decimalIterator's, bit for bit. The deltas are
// decoded and summed in one loop (decimalRun) as riceDecode decodes them:
// over the section while 8-byte loads fit, then over its last bytes
// padded with zeros, then, for what is left (an escaped value, a stream
// read past its end), value by value with riceReader, whose ok tells
// whether the reads stayed in the section.
func (c *decimalChunk) decimalValues(out []float64) error {
	m, step, factor := c.m0, c.center, c.factor
	out[0] = float64(m)
	if rest := out[1:]; len(rest) > 0 {
		if len(c.valBits) == 0 {
			return c.fail("value bits")
		}
		k, b := uint(c.valBits[0]), c.valBits[1:]
		r := riceReader{b: b}
		i := 0
		if k <= 62 {
			var w uint64
			var n uint
			var pos int
			i, w, n, pos, m = decimalRun(rest, b, k, 0, 0, 0, m, step*factor, factor)
			if i < len(rest) && pos+8 > len(b) {
				var tail [32]byte
				copy(tail[:], b[pos:])
				var j, tpos int
				j, w, n, tpos, m = decimalRun(rest[i:], tail[:], k, w, n, 0, m, step*factor, factor)
				i += j
				pos += tpos
			}
			r = riceReader{b: b, pos: pos, w: w, n: n}
		}
		for ; i < len(rest); i++ {
			m += (step + r.rice(k)) * factor
			rest[i] = float64(m)
		}
		if !r.ok() {
			return c.fail("value bits")
		}
	}
	if c.scale != 0 {
		// float64(m) / 10^scale, as decimalIterator: the same bits.
		div := pow10[c.scale]
		for i, v := range out {
			out[i] = v / div
		}
	}
	return nil
}

// appendFloats appends to ts and fs the samples of the chunk whose
// timestamps are in [mint, maxt], leaving out staleness markers if
// dropStale: what decimalIterator returns, in order, filtered so. A
// corrupt chunk is an error naming what is wrong, as decimalIterator's.
func (c *decimalChunk) appendFloats(ts []int64, fs []float64, mint, maxt int64, dropStale bool) ([]int64, []float64, error) {
	n := c.n
	if maxt < c.minT || mint > maxt {
		return ts, fs, nil
	}
	base := len(ts)
	// Timestamps: the index lo of the first at or after mint, and hi
	// after the last at or before maxt. parse made sure they increase
	// without overflow in a regular chunk; a Rice chunk is checked here.
	var lo, hi int
	if c.tsMode == tsRegular {
		// Differences in uint64: they cannot overflow there.
		d := c.d0
		if mint > c.minT {
			diff := uint64(mint) - uint64(c.minT)
			q := diff / uint64(d)
			if diff%uint64(d) != 0 {
				q++
			}
			lo = int(min(q, uint64(n)))
		}
		hi = int(min((uint64(maxt)-uint64(c.minT))/uint64(d), uint64(n-1)) + 1)
		if lo >= hi {
			return ts, fs, nil
		}
		ts = growInts(ts, hi-lo)
		out := ts[base:]
		t := c.minT + int64(lo)*d
		for i := range out {
			out[i] = t
			t += d
		}
	} else {
		// All n timestamps, then the range.
		ts = growInts(ts, n)
		out := ts[base:]
		if !riceDecode(out[2:], c.tsBits) {
			return ts[:base], fs, c.fail("timestamp bits")
		}
		t, d0 := c.minT, c.d0
		out[0] = t
		t += d0
		out[1] = t
		bad := false
		for i := 2; i < n; i++ {
			d := d0 + out[i]
			bad = bad || d <= 0 || t > math.MaxInt64-d
			t += d
			out[i] = t
		}
		if bad {
			return ts[:base], fs, c.fail("timestamps out of order")
		}
		hi = n
		for hi > 0 && out[hi-1] > maxt {
			hi--
		}
		for lo < hi && out[lo] < mint {
			lo++
		}
		if lo >= hi {
			return ts[:base], fs, nil
		}
		if lo > 0 {
			copy(out, out[lo:hi])
		}
		ts = ts[:base+hi-lo]
	}
	// Values of samples [0, hi), kept from lo.
	fs = growFloats(fs, hi-lo)
	out := fs[len(fs)-(hi-lo):]
	switch c.valMode {
	case valConstant:
		if dropStale && value.IsStaleNaN(c.constant) {
			return ts[:base], fs[:len(fs)-(hi-lo)], nil
		}
		for i := range out {
			out[i] = c.constant
		}
	case valDecimalRice:
		// The values of samples [0, hi) — a delta section is read from
		// its start —, then those from lo moved down.
		vbase := len(fs) - (hi - lo)
		fs = growFloats(fs[:vbase], hi)
		all := fs[vbase:]
		if err := c.decimalValues(all); err != nil {
			return ts[:base], fs[:vbase], err
		}
		if lo > 0 {
			copy(all, all[lo:])
		}
		fs = fs[:vbase+hi-lo]
	case valXOR:
		out, err := c.xorValues(out, lo)
		if err != nil {
			return ts[:base], fs[:len(fs)-(hi-lo)], err
		}
		// Staleness markers dropped: a look for the first, then a
		// second pass from it only if there is one.
		first := len(out)
		if dropStale {
			for i, v := range out {
				if value.IsStaleNaN(v) {
					first = i
					break
				}
			}
		}
		if first < len(out) {
			keep := first
			tt := ts[base:]
			for i, v := range out[first:] {
				i += first
				if value.IsStaleNaN(v) {
					continue
				}
				tt[keep], out[keep] = tt[i], v
				keep++
			}
			ts = ts[:base+keep]
			fs = fs[:len(fs)-(hi-lo)+keep]
		}
	}
	return ts, fs, nil
}

// xorValues decodes the values of samples [0, lo+len(out)) of an XOR
// value section, keeping those from lo in out.
func (c *decimalChunk) xorValues(out []float64, lo int) ([]float64, error) {
	b := c.valBits
	// Those before lo, without a store; then those of out.
	pos, prev, err := c.xorRun(nil, lo, b, 0, 0)
	if err != nil {
		return out, err
	}
	_, _, err = c.xorRun(out, len(out), b, pos, prev)
	return out, err
}

// xorRun decodes n values of an XOR value section from pos, the value
// before being prev, into out if not nil; it returns the position after
// them and the last value's bits.
func (c *decimalChunk) xorRun(out []float64, n int, b []byte, pos int, prev uint64) (int, uint64, error) {
	if out != nil {
		out = out[:n]
	}
	for i := range n {
		if pos >= len(b) {
			return pos, prev, c.fail("xor bytes")
		}
		h := b[pos]
		pos++
		if h != 0xff {
			lead, trail := int(h>>4), int(h&0x0f)
			if lead+trail > 7 {
				return pos, prev, c.fail("xor header")
			}
			nb := 8 - lead - trail
			if pos+nb > len(b) {
				return pos, prev, c.fail("xor bytes")
			}
			var x uint64
			if pos+8 <= len(b) {
				// The nb bytes, as the top of a big-endian word.
				x = binary.BigEndian.Uint64(b[pos:]) >> (8 * (8 - nb))
			} else {
				for _, v := range b[pos : pos+nb] {
					x = x<<8 | uint64(v)
				}
			}
			pos += nb
			prev ^= x << (8 * trail)
		}
		if out != nil {
			out[i] = math.Float64frombits(prev)
		}
	}
	return pos, prev, nil
}

func (c *decimalChunk) fail(what string) error {
	return fmt.Errorf("%w: %s: %w", errDecimalChunk, what, errCorruptValue)
}

// growInts extends s by n elements (their values unset).
func growInts(s []int64, n int) []int64 {
	if cap(s)-len(s) < n {
		s = append(s[:cap(s)], make([]int64, len(s)+n-cap(s))...)[:len(s)]
	}
	return s[:len(s)+n]
}

func growFloats(s []float64, n int) []float64 {
	if cap(s)-len(s) < n {
		s = append(s[:cap(s)], make([]float64, len(s)+n-cap(s))...)[:len(s)]
	}
	return s[:len(s)+n]
}

// appendIterFloats appends the float samples of it in [mint, maxt] to ts
// and fs (staleness markers left out if dropStale); false if it has a
// sample that is not a float or has a start timestamp.
func appendIterFloats(it chunkenc.Iterator, ts []int64, fs []float64, mint, maxt int64, dropStale bool) ([]int64, []float64, bool, error) {
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat || it.AtST() != 0 {
			return ts, fs, false, nil
		}
		t, f := it.At()
		if t < mint {
			continue
		}
		if t > maxt {
			break
		}
		if dropStale && value.IsStaleNaN(f) {
			continue
		}
		ts = append(ts, t)
		fs = append(fs, f)
	}
	return ts, fs, true, it.Err()
}

// floatSeriesSet is a select's series, each of which can append its float
// samples in bulk (AppendFloats) when the caller reads it right after
// Next, as pkg/rollup does: Series notes the chunk metas of the series it
// listed last (noteSeries), and At ties the series it returns to them.
type floatSeriesSet struct {
	storage.SeriesSet
	h          *rangeHead
	mint, maxt int64 // the select's range: its series' iterators stop there
	slab       []floatSeries
	slabs      int // slabs made: the first ones are small (a select of one series is common)
	metas      []chunks.Meta
	it         chunkenc.Iterator
}

func (s *floatSeriesSet) At() storage.Series {
	inner := s.SeriesSet.At()
	if len(s.slab) == 0 {
		s.slab = make([]floatSeries, slabLen(s.slabs))
		s.slabs++
	}
	fs := &s.slab[0]
	s.slab = s.slab[1:]
	*fs = floatSeries{Series: inner, set: s, gen: s.h.noted(inner)}
	return fs
}

// slabLen is the length of the n-th slab of series a set makes: 4, 16,
// then 64. A series set hands out its series from slabs; 64 at once made
// 2.5 KB of garbage per select of one series, with GOGC 30 over a large
// heap.
func slabLen(n int) int { return 4 << (2 * min(n, 2)) }

// floatSeries is a series of floatSeriesSet.
type floatSeries struct {
	storage.Series
	set *floatSeriesSet
	gen uint64 // of the chunk metas noted for it; 0: none
}

// noteSeries keeps the chunk metas Series listed for a series, with its
// labels if built.
func (h *rangeHead) noteSeries(s *memSeries, lset labels.Labels, metas []chunks.Meta) {
	h.curMu.Lock()
	h.curGen++
	h.curSeries, h.curLset = s, lset
	h.curMetas = append(h.curMetas[:0], metas...)
	h.curMu.Unlock()
}

// noted returns the generation of the metas noted last if they are of
// series (a part's series: the same memSeries; another: the same labels,
// those Series built), 0 otherwise.
func (h *rangeHead) noted(series storage.Series) uint64 {
	ps, part := series.(*partSeries)
	var lset labels.Labels
	if !part {
		lset = series.Labels()
	}
	h.curMu.Lock()
	defer h.curMu.Unlock()
	switch {
	case part && ps.ms == h.curSeries && h.curSeries != nil:
		return h.curGen
	case !part && !h.curLset.IsEmpty() && labels.Equal(h.curLset, lset):
		return h.curGen
	}
	return 0
}

// LabelValue is the value of the series' label name, read without
// building its labels when its inner series can (a part's).
func (s *floatSeries) LabelValue(name string) string {
	if lv, ok := s.Series.(interface{ LabelValue(string) string }); ok {
		return lv.LabelValue(name)
	}
	return s.Labels().Get(name)
}

// AppendFloats appends to ts and fs the series' float samples with
// timestamps in [mint, maxt], staleness markers left out if dropStale:
// those its iterator returns in that range, in order, read from its chunks
// without the iterator. ok is false, with ts and fs as they were, when it
// cannot read them so — the series was not read right after the select's
// Next, or has chunks that overlap (out-of-order samples), a native
// histogram or a sample with a start timestamp —, and the caller should
// iterate the series instead. ts and fs must have the same length.
func (s *floatSeries) AppendFloats(ts []int64, fs []float64, mint, maxt int64, dropStale bool) (outTs []int64, outFs []float64, ok bool, err error) {
	set, h := s.set, s.set.h
	if ps, ok := s.Series.(*partSeries); ok && ps.set.direct {
		return ps.appendFloats(set, ts, fs, mint, maxt, dropStale)
	}
	h.curMu.Lock()
	if s.gen == 0 || s.gen != h.curGen {
		h.curMu.Unlock()
		return ts, fs, false, nil
	}
	set.metas = append(set.metas[:0], h.curMetas...)
	h.curMu.Unlock()
	mint, maxt = max(mint, set.mint), min(maxt, set.maxt)
	base := len(ts)
	locked := false
	defer func() {
		if locked {
			h.iterMu.Unlock()
		}
		if !ok || err != nil {
			outTs, outFs = outTs[:base], outFs[:base]
		}
	}()
	for _, m := range set.metas {
		if m.MaxTime < mint || m.MinTime > maxt {
			continue
		}
		cmaxt := min(maxt, m.MaxTime)
		switch {
		case m.Chunk != nil:
			if ts, fs, ok, err = set.appendChunk(m.Chunk, ts, fs, mint, cmaxt, dropStale); !ok || err != nil {
				return ts, fs, ok, err
			}
			continue
		case m.Ref&lazyChunkRef == 0:
			// A merge of overlapping chunks.
			return ts, fs, false, nil
		case m.Ref&lazyHeadRef != 0:
			// The open chunk, read in place under the series' lock.
			found := h.withHeadChunk(m, func(c *memChunk) {
				ts, fs, ok, err = set.appendChunk(c.chunk, ts, fs, mint, cmaxt, dropStale)
			})
			if found {
				if !ok || err != nil {
					return ts, fs, ok, err
				}
				continue
			}
		}
		if !locked {
			h.iterMu.Lock()
			locked = true
		}
		sref, enc, _, data, err := h.storedChunk(m)
		if err != nil {
			return ts, fs, false, err
		}
		if enc == encDecimal {
			var c decimalChunk
			if err = c.parse(data, m.MinTime); err == nil {
				ts, fs, err = c.appendFloats(ts, fs, mint, cmaxt, dropStale)
			}
			if err != nil {
				return ts, fs, false, fmt.Errorf("series %d chunk at %d: %w", sref, m.MinTime, err)
			}
			continue
		}
		chk, err := openChunk(enc, data, m.MinTime)
		if err != nil {
			return ts, fs, false, fmt.Errorf("series %d chunk at %d: %w: %w", sref, m.MinTime, err, errCorruptValue)
		}
		if ts, fs, ok, err = set.appendChunk(chk, ts, fs, mint, cmaxt, dropStale); !ok || err != nil {
			return ts, fs, ok, err
		}
	}
	return ts, fs, true, nil
}

// appendChunk appends the float samples of an in-memory chunk in [mint,
// maxt]; false if it has other samples.
func (set *floatSeriesSet) appendChunk(chk chunkenc.Chunk, ts []int64, fs []float64, mint, maxt int64, dropStale bool) ([]int64, []float64, bool, error) {
	switch chk.Encoding() {
	case encDecimal:
		c, ok := chk.(*decimalChunk)
		if !ok {
			return ts, fs, false, nil
		}
		ts, fs, err := c.appendFloats(ts, fs, mint, maxt, dropStale)
		return ts, fs, true, err
	case chunkenc.EncXOR2:
		// Decoded in bulk; read with the iterator as before if the chunk
		// has start timestamps or its bits end early.
		base := len(ts)
		nts, nfs, ok, err := appendXOR2Floats(chk.Bytes(), ts, fs, mint, maxt, dropStale)
		if ok && err == nil {
			return nts, nfs, true, nil
		}
		ts, fs = nts[:base], nfs[:base]
		fallthrough
	case chunkenc.EncXOR:
		set.it = chk.Iterator(set.it)
		return appendIterFloats(set.it, ts, fs, mint, maxt, dropStale)
	}
	return ts, fs, false, nil
}
