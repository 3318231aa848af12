// Package xorchunk writes Prometheus' XOR chunks (chunkenc.EncXOR) fast:
// the bytes chunkenc's XOR appender writes, through a 64-bit bit
// accumulator instead of its bit-by-bit stream. It is how levitated hands
// its chunks to readers that know only Prometheus' standard encodings
// (remote read, the Thanos StoreAPI): re-encoding a stored chunk is then
// one decode and one cheap encode.
package xorchunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// MaxSamples is the most samples one XOR chunk holds (its header counts
// them in 16 bits).
const MaxSamples = math.MaxUint16

// Encoder writes one XOR chunk at a time. The zero value is ready after
// Reset.
type Encoder struct {
	buf []byte // header and the complete bytes
	acc uint64 // pending bits, left-aligned
	nb  uint   // how many bits of acc are pending (< 64)
	n   int    // samples written

	t        int64
	v        uint64
	tDelta   uint64
	leading  uint8
	trailing uint8
}

// Reset starts a new chunk, written into dst's storage (dst[:0]).
func (e *Encoder) Reset(dst []byte) {
	*e = Encoder{buf: append(dst[:0], 0, 0), leading: 0xff}
}

// NumSamples is how many samples the chunk holds.
func (e *Encoder) NumSamples() int { return e.n }

// Full reports whether the chunk holds MaxSamples samples.
func (e *Encoder) Full() bool { return e.n >= MaxSamples }

// Append adds a sample, which must be newer than the last one. Appending
// to a full chunk panics, as chunkenc's appender does.
func (e *Encoder) Append(t int64, v float64) {
	vb := math.Float64bits(v)
	var tDelta uint64
	switch e.n {
	case 0:
		var b [binary.MaxVarintLen64]byte
		for _, c := range b[:binary.PutVarint(b[:], t)] {
			e.write(uint64(c), 8)
		}
		e.write(vb, 64)
	case 1:
		tDelta = uint64(t - e.t)
		var b [binary.MaxVarintLen64]byte
		for _, c := range b[:binary.PutUvarint(b[:], tDelta)] {
			e.write(uint64(c), 8)
		}
		e.value(vb)
	default:
		if e.n >= MaxSamples {
			panic("xorchunk: chunk capacity exceeded")
		}
		tDelta = uint64(t - e.t)
		dod := int64(tDelta - e.tDelta)
		switch {
		case dod == 0:
			e.write(0, 1)
		case bitRange(dod, 14):
			e.write(0b10<<14|uint64(dod)&(1<<14-1), 16)
		case bitRange(dod, 17):
			e.write(0b110<<17|uint64(dod)&(1<<17-1), 20)
		case bitRange(dod, 20):
			e.write(0b1110<<20|uint64(dod)&(1<<20-1), 24)
		default:
			e.write(0b1111, 4)
			e.write(uint64(dod), 64)
		}
		e.value(vb)
	}
	e.t, e.v, e.tDelta = t, vb, tDelta
	e.n++
}

// bitRange is chunkenc's: whether x fits the nbits bucket of the
// timestamp encoding.
func bitRange(x int64, nbits uint8) bool {
	return -((1<<(nbits-1))-1) <= x && x <= 1<<(nbits-1)
}

// value writes v XORed with the previous value, as chunkenc's xorWrite.
func (e *Encoder) value(v uint64) {
	delta := v ^ e.v
	if delta == 0 {
		e.write(0, 1)
		return
	}
	leading := uint8(bits.LeadingZeros64(delta))
	trailing := uint8(bits.TrailingZeros64(delta))
	if leading >= 32 {
		leading = 31
	}
	if e.leading != 0xff && leading >= e.leading && trailing >= e.trailing {
		e.write(0b10, 2)
		e.write(delta>>e.trailing, uint(64-e.leading-e.trailing))
		return
	}
	e.leading, e.trailing = leading, trailing
	sig := 64 - leading - trailing
	// 11, 5 bits of leading zeros, 6 of significant bits (64 written as 0).
	e.write(0b11<<11|uint64(leading)<<6|uint64(sig)&0x3f, 13)
	e.write(delta>>trailing, uint(sig))
}

// write appends the n low bits of u (n <= 64; u has no other bits set),
// most significant first. Small enough to be inlined; flush does the rest.
func (e *Encoder) write(u uint64, n uint) {
	if n < 64-e.nb {
		e.acc |= u << (64 - e.nb - n)
		e.nb += n
		return
	}
	e.flush(u, n)
}

// flush fills the accumulator with the first bits of u, appends it, and
// keeps the rest of u.
func (e *Encoder) flush(u uint64, n uint) {
	free := 64 - e.nb
	e.acc |= u >> (n - free)
	e.buf = binary.BigEndian.AppendUint64(e.buf, e.acc)
	e.nb = n - free
	if e.nb == 0 {
		e.acc = 0
	} else {
		e.acc = u << (64 - e.nb)
	}
}

// Bytes returns the chunk: its header and every bit written, the last
// byte padded with zeros. The Encoder must be Reset before it is used
// again; the bytes are dst's storage given to Reset (or grown from it).
func (e *Encoder) Bytes() []byte {
	binary.BigEndian.PutUint16(e.buf, uint16(e.n))
	for nb := int(e.nb); nb > 0; nb -= 8 {
		e.buf = append(e.buf, byte(e.acc>>56))
		e.acc <<= 8
	}
	e.nb = 0
	return e.buf
}

// Encode re-encodes the float samples of it as one XOR chunk, written
// into dst's storage, with the times of its first and last samples. A
// sample of another type, more than MaxSamples samples or an error of it
// is an error.
func (e *Encoder) Encode(dst []byte, it chunkenc.Iterator) (data []byte, mint, maxt int64, err error) {
	e.Reset(dst)
	for {
		switch it.Next() {
		case chunkenc.ValNone:
			if err := it.Err(); err != nil {
				return nil, 0, 0, err
			}
			if e.n == 0 {
				return nil, 0, 0, errors.New("xorchunk: no samples")
			}
			return e.Bytes(), mint, maxt, nil
		case chunkenc.ValFloat:
			if e.n >= MaxSamples {
				return nil, 0, 0, fmt.Errorf("xorchunk: more than %d samples", MaxSamples)
			}
			t, v := it.At()
			if e.n == 0 {
				mint = t
			}
			maxt = t
			e.Append(t, v)
		default:
			return nil, 0, 0, errors.New("xorchunk: a sample that is not a float")
		}
	}
}
