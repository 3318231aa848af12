package storage

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unsafe"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// xor2Head is the open float chunk of a series: the bytes of Prometheus'
// XOR2 chunk and the state of its appender in one object. Prometheus' head
// holds three (the XOR2Chunk, its appender, the byte slice), and its byte
// stream grows by doubling from 128 bytes: a chunk of 80–120 samples
// (150–250 bytes) then holds ~90 bytes it never fills, one time in two
// even more. Here the stream starts at the size of the series' previous
// chunk (the next one is much like it), or small for a series' first
// chunk, and grows by half, to the allocator's size class.
//
// The bytes are those chunkenc's XOR2 appender writes, bit for bit (its
// Append for samples without a start timestamp, copied with the bit writer
// of its bstream; TestXOR2HeadMatchesChunkenc compares them on random
// series): readers, the checkpoint and Pebble see an ordinary XOR2 chunk.
// A sample the copy does not cover (a start timestamp, or the 128th sample,
// where chunkenc starts writing one per sample) hands the chunk over to
// chunkenc's own appender, which reads the state back from the bytes.
//
// It is both the chunk and its appender. Like the chunkenc types it is not
// safe for concurrent use: the series' mu guards it.
type xor2Head struct {
	// The byte stream: its first byte, length and capacity (a slice
	// header in 12 bytes instead of 24, which keeps the struct in the
	// allocator's 48-byte class; a stream stays far below 64 KiB, see
	// xor2MaxStreamBytes). p is nil once the chunk is handed over.
	p     *byte
	n, c  uint16
	count uint8 // bits still free in the last byte, as in chunkenc's bstream

	leading, trailing uint8

	t      int64
	v      uint64 // bits of the newest value that is not a stale marker
	tDelta uint64

	// slow is chunkenc's chunk and appender once the chunk is handed over;
	// p is nil then.
	slow *xor2Slow
}

type xor2Slow struct {
	c   chunkenc.Chunk
	app chunkenc.Appender
}

const (
	xor2HeaderSize     = 3   // sample count (2 bytes) and the start-timestamp header
	xor2MaxFirstSTOn   = 127 // chunkenc's maxFirstSTChangeOn
	xor2MinCap         = 32
	xor2MaxInitialCap  = 1024
	xor2MinGrowthBytes = 16
	// xor2MaxStreamBytes hands a stream this long over to chunkenc (its
	// length must fit n); 127 samples take at most ~2.4 KB.
	xor2MaxStreamBytes = 1 << 15
)

// b returns the stream as a slice (nil once handed over).
func (h *xor2Head) b() []byte {
	if h.p == nil {
		return nil
	}
	return unsafe.Slice(h.p, int(h.c))[:h.n]
}

// setB makes b the stream; len and cap must fit n and c.
func (h *xor2Head) setB(b []byte) {
	if b == nil {
		h.p, h.n, h.c = nil, 0, 0
		return
	}
	h.p, h.n, h.c = unsafe.SliceData(b), uint16(len(b)), uint16(min(cap(b), math.MaxUint16))
}

// last is the stream's last byte.
func (h *xor2Head) last() *byte {
	return (*byte)(unsafe.Add(unsafe.Pointer(h.p), int(h.n)-1))
}

// newXOR2Head returns an empty chunk whose stream has room for capHint
// bytes (within [xor2MinCap, xor2MaxInitialCap]).
func newXOR2Head(capHint int) *xor2Head {
	b := append([]byte(nil), make([]byte, min(max(capHint, xor2MinCap), xor2MaxInitialCap))...)
	h := &xor2Head{t: math.MinInt64, leading: 0xff}
	h.setB(b[:xor2HeaderSize])
	return h
}

// Bytes returns the chunk's bytes.
func (h *xor2Head) Bytes() []byte {
	if h.slow != nil {
		return h.slow.c.Bytes()
	}
	return h.b()
}

// Encoding is chunkenc.EncXOR2.
func (*xor2Head) Encoding() chunkenc.Encoding { return chunkenc.EncXOR2 }

// NumSamples returns the number of samples in the chunk.
func (h *xor2Head) NumSamples() int {
	return int(binary.BigEndian.Uint16(h.Bytes()))
}

// Appender returns the chunk itself: it is its own appender.
func (h *xor2Head) Appender() (chunkenc.Appender, error) { return h, nil }

// Iterator iterates the chunk's bytes with chunkenc's XOR2 iterator.
func (h *xor2Head) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if h.slow != nil {
		return h.slow.c.Iterator(it)
	}
	var c chunkenc.XOR2Chunk
	c.Reset(h.b())
	return c.Iterator(it)
}

// Compact gives back the spare capacity of the byte stream.
func (h *xor2Head) Compact() {
	if h.slow != nil {
		h.slow.c.Compact()
		return
	}
	if int(h.c)-int(h.n) > xor2MinGrowthBytes {
		h.setB(append([]byte(nil), h.b()...))
	}
}

// Reset makes the chunk the one in stream; the appender state is read back
// from it on the next Append.
func (h *xor2Head) Reset(stream []byte) {
	c, _ := chunkenc.FromData(chunkenc.EncXOR2, stream)
	h.setB(nil)
	h.slow = &xor2Slow{c: c}
}

// handOver moves the chunk to chunkenc's XOR2 chunk and appender by
// appending its samples again (all without a start timestamp). Reading the
// appender's state back from the bytes (chunkenc's XOR2Chunk.Appender)
// would not do: after one sample it starts from another value window than
// an appender that wrote the sample, and writes other bytes from then on.
func (h *xor2Head) handOver() {
	c := chunkenc.NewXOR2Chunk()
	app, err := c.Appender()
	if err != nil {
		panic(err) // an empty chunk always has an appender; unreachable.
	}
	it := h.Iterator(nil)
	for it.Next() == chunkenc.ValFloat {
		t, v := it.At()
		app.Append(0, t, v)
	}
	h.setB(nil)
	h.slow = &xor2Slow{c: c, app: app}
}

// Append adds a float sample, as chunkenc's XOR2 appender does.
func (h *xor2Head) Append(st, t int64, v float64) {
	n := uint16(0)
	if h.slow == nil {
		n = binary.BigEndian.Uint16(h.b())
		if st != 0 || n == xor2MaxFirstSTOn || n == math.MaxUint16 || h.n >= xor2MaxStreamBytes {
			h.handOver()
		}
	}
	if h.slow != nil {
		if h.slow.app == nil {
			app, err := h.slow.c.Appender()
			if err != nil {
				panic(err) // the bytes were written by this appender; unreachable.
			}
			h.slow.app = app
		}
		h.slow.app.Append(st, t, v)
		return
	}
	var tDelta uint64
	vbits := math.Float64bits(v)
	switch n {
	case 0:
		var buf [binary.MaxVarintLen64]byte
		for _, c := range buf[:binary.PutVarint(buf[:], t)] {
			h.writeByte(c)
		}
		h.writeBits(vbits, 64)
	case 1:
		tDelta = uint64(t - h.t)
		var buf [binary.MaxVarintLen64]byte
		for _, c := range buf[:binary.PutUvarint(buf[:], tDelta)] {
			h.writeByte(c)
		}
		h.writeVDelta(v)
	default:
		tDelta = uint64(t - h.t)
		dod := int64(tDelta - h.tDelta)
		switch {
		case dod == 0 && vbits == h.v:
			h.writeBit(false)
		case dod >= -(1<<12) && dod <= (1<<12)-1 && vbits == h.v:
			h.writeByte(0b110_00000 | byte(uint64(dod)>>8)&0x1F)
			h.writeByte(byte(uint64(dod)))
			h.writeBit(false)
		default:
			h.encodeJoint(dod, v)
		}
	}
	h.t = t
	if !value.IsStaleNaN(v) {
		h.v = vbits
	}
	h.tDelta = tDelta
	binary.BigEndian.PutUint16(h.b(), n+1)
}

// AppendHistogram panics, as chunkenc's float appenders do.
func (*xor2Head) AppendHistogram(chunkenc.Appender, int64, int64, *histogram.Histogram, bool) (chunkenc.Chunk, bool, chunkenc.Appender, error) {
	panic("appended a histogram sample to a float chunk")
}

// AppendFloatHistogram panics, as chunkenc's float appenders do.
func (*xor2Head) AppendFloatHistogram(chunkenc.Appender, int64, int64, *histogram.FloatHistogram, bool) (chunkenc.Chunk, bool, chunkenc.Appender, error) {
	panic("appended a float histogram sample to a float chunk")
}

// encodeJoint is chunkenc's xor2Appender.encodeJoint.
func (h *xor2Head) encodeJoint(dod int64, v float64) {
	if dod == 0 {
		if value.IsStaleNaN(v) {
			h.writeBits(0b11111, 5)
			return
		}
		vbits := math.Float64bits(v) ^ h.v
		if vbits == 0 {
			h.writeBit(false)
			return
		}
		h.writeBits(0b10, 2)
		h.writeVDeltaKnownNonZero(vbits)
		return
	}
	switch {
	case dod >= -(1<<12) && dod <= (1<<12)-1:
		h.writeByte(0b110_00000 | byte(uint64(dod)>>8)&0x1F)
		h.writeByte(byte(uint64(dod)))
	case dod >= -(1<<19) && dod <= (1<<19)-1:
		h.writeByte(0b1110_0000 | byte(uint64(dod)>>16)&0x0F)
		h.writeByte(byte(uint64(dod) >> 8))
		h.writeByte(byte(uint64(dod)))
	default:
		h.writeBits(0b11110, 5)
		h.writeBits(uint64(dod), 64)
	}
	if math.Float64bits(v) == h.v {
		h.writeBit(false)
	} else {
		h.writeVDelta(v)
	}
}

// writeVDelta is chunkenc's xor2Appender.writeVDelta.
func (h *xor2Head) writeVDelta(v float64) {
	if value.IsStaleNaN(v) {
		h.writeBits(0b111, 3)
		return
	}
	delta := math.Float64bits(v) ^ h.v
	if delta == 0 {
		h.writeBit(false)
		return
	}
	newLeading := uint8(bits.LeadingZeros64(delta))
	newTrailing := uint8(bits.TrailingZeros64(delta))
	if newLeading >= 32 {
		newLeading = 31
	}
	if newLeading >= h.leading && newTrailing >= h.trailing && newLeading+newTrailing <= h.leading+h.trailing+12 {
		h.writeBits(0b10, 2)
		h.writeBits(delta>>h.trailing, 64-int(h.leading)-int(h.trailing))
		return
	}
	if h.leading != 0xff && (newLeading < h.leading || newTrailing < h.trailing) {
		unionLeading, unionTrailing := min(newLeading, h.leading), min(newTrailing, h.trailing)
		if newLeading+newTrailing-unionLeading-unionTrailing <= 6 {
			newLeading, newTrailing = unionLeading, unionTrailing
		}
	}
	h.leading, h.trailing = newLeading, newTrailing
	h.writeBits(0b110, 3)
	h.writeBits(uint64(newLeading), 5)
	sigbits := 64 - newLeading - newTrailing
	h.writeBits(uint64(sigbits), 6)
	h.writeBits(delta>>newTrailing, int(sigbits))
}

// writeVDeltaKnownNonZero is chunkenc's xor2Appender function of that name.
func (h *xor2Head) writeVDeltaKnownNonZero(delta uint64) {
	newLeading := uint8(bits.LeadingZeros64(delta))
	newTrailing := uint8(bits.TrailingZeros64(delta))
	if newLeading >= 32 {
		newLeading = 31
	}
	if newLeading >= h.leading && newTrailing >= h.trailing && newLeading+newTrailing <= h.leading+h.trailing+11 {
		h.writeBit(false)
		h.writeBits(delta>>h.trailing, 64-int(h.leading)-int(h.trailing))
		return
	}
	if h.leading != 0xff && (newLeading < h.leading || newTrailing < h.trailing) {
		unionLeading, unionTrailing := min(newLeading, h.leading), min(newTrailing, h.trailing)
		if newLeading+newTrailing-unionLeading-unionTrailing <= 5 {
			newLeading, newTrailing = unionLeading, unionTrailing
		}
	}
	h.leading, h.trailing = newLeading, newTrailing
	h.writeBit(true)
	h.writeBits(uint64(newLeading), 5)
	sigbits := 64 - newLeading - newTrailing
	h.writeBits(uint64(sigbits), 6)
	h.writeBits(delta>>newTrailing, int(sigbits))
}

// push appends one byte, growing the stream by half (at least
// xor2MinGrowthBytes, rounded up to the allocator's size class) when full.
func (h *xor2Head) push(c byte) {
	if h.n == h.c {
		n := int(h.n)
		grown := append([]byte(nil), make([]byte, n+max(n/2, xor2MinGrowthBytes))...)
		copy(grown, h.b())
		h.setB(grown[:n])
	}
	h.n++
	*h.last() = c
}

// writeBit, writeByte and writeBits write what chunkenc's bstream
// writeBit, writeByte and writeBitsFast write.
func (h *xor2Head) writeBit(bit bool) {
	if h.count == 0 {
		h.push(0)
		h.count = 8
	}
	if bit {
		*h.last() |= 1 << (h.count - 1)
	}
	h.count--
}

func (h *xor2Head) writeByte(c byte) {
	if h.count == 0 {
		h.push(c)
		return
	}
	*h.last() |= c >> (8 - h.count)
	h.push(c << h.count)
}

func (h *xor2Head) writeBits(u uint64, nbits int) {
	u <<= 64 - uint(nbits)
	if h.count > 0 {
		free := int(h.count)
		*h.last() |= byte(u >> uint(64-free))
		if nbits < free {
			h.count = uint8(free - nbits)
			return
		}
		u <<= uint(free)
		nbits -= free
		h.count = 0
	}
	for nbits >= 8 {
		h.push(byte(u >> 56))
		u <<= 8
		nbits -= 8
	}
	if nbits > 0 {
		h.push(byte(u >> 56))
		h.count = uint8(8 - nbits)
	}
}
