package storage

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"

	"github.com/prometheus/prometheus/model/value"
)

// errXOR2Short is the bulk XOR2 decoder's error for a chunk whose bits end
// before its sample count does (or with a varint longer than ten bytes).
// appendChunk does not return it: it reads such a chunk again with
// chunkenc's iterator, whose error (and samples) are those of before.
var errXOR2Short = errors.New("xor2 chunk: bits end before its samples")

// xor2STHeader is the offset of an XOR2 chunk's start-timestamp header
// byte, after the 2-byte sample count; the samples' bits follow it.
const xor2STHeader = 2

// appendXOR2Floats appends to ts and fs the samples of the XOR2 chunk b
// (Prometheus' chunkenc.EncXOR2 bytes) with timestamps in [mint, maxt],
// staleness markers left out if dropStale: the samples chunkenc's
// XOR2 iterator returns, decoded in one loop over a local bit position
// instead of two interface calls per sample. It reads the format of
// tsdb/chunkenc/xor2.go (v0.316.0): the first sample's varint timestamp
// and 64 value bits, the second's uvarint delta and value, then per sample
// the joint control (0: dod 0 and the value unchanged; 10: dod 0, value
// changed; 110 / 1110: a 13- / 20-bit dod; 11110: a 64-bit dod; 11111:
// dod 0 and a stale marker) and, after a dod, the value control (0
// unchanged, 10 the previous window, 110 a new window, 111 a stale
// marker).
//
// ok is false, with nothing appended, for a chunk whose start-timestamp
// header is set (its samples may have start timestamps, which
// appendIterFloats refuses; the caller reads it with the iterator) or
// shorter than its header. err is errXOR2Short when the bits end before
// the sample count, with ts and fs holding what was appended before.
func appendXOR2Floats(b []byte, ts []int64, fs []float64, mint, maxt int64, dropStale bool) ([]int64, []float64, bool, error) {
	if len(b) < xor2STHeader+1 || b[xor2STHeader] != 0 {
		return ts, fs, false, nil
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 {
		return ts, fs, true, nil
	}
	end := uint(len(b)) * 8
	pos := uint(xor2STHeader+1) * 8

	// Sample 0: a varint timestamp and the value's 64 bits.
	ux, pos, ok := xor2Uvarint(b, pos)
	t := int64(ux >> 1)
	if ux&1 != 0 {
		t = ^t
	}
	var vb uint64
	vb, pos = xor2Read(b, pos, 64)
	if !ok || pos > end {
		return ts, fs, true, errXOR2Short
	}
	baseline := uint64(0) // the bits of the newest value that is not a stale marker
	if vb != value.StaleNaN {
		baseline = vb
	}
	// As appendIterFloats: before mint, then after maxt (an empty range
	// reads on).
	if t >= mint {
		if t > maxt {
			return ts, fs, true, nil
		}
		if !dropStale || vb != value.StaleNaN {
			ts, fs = append(ts, t), append(fs, math.Float64frombits(vb))
		}
	}
	if n == 1 {
		return ts, fs, true, nil
	}

	// Sample 1: a uvarint delta and a value as after a dod.
	var leading, trailing uint8
	tDelta, pos, ok := xor2Uvarint(b, pos)
	t += int64(tDelta)
	vb, baseline, leading, trailing, pos = xor2Value(b, pos, baseline, leading, trailing)
	if !ok || pos > end {
		return ts, fs, true, errXOR2Short
	}
	if t >= mint {
		if t > maxt {
			return ts, fs, true, nil
		}
		if !dropStale || vb != value.StaleNaN {
			ts, fs = append(ts, t), append(fs, math.Float64frombits(vb))
		}
	}

	// sz is the previous window's width, 64 - leading - trailing in
	// chunkenc's uint8 arithmetic: the new window's significant bits.
	sz := uint(64)
	if leading != 0 || trailing != 0 {
		sz = uint(uint8(64 - int(leading) - int(trailing)))
	}
	for i := 2; i < n; i++ {
		// w holds at least 57 bits from pos on.
		w := xor2Peek(b, pos)
		switch ctrl := bits.LeadingZeros64(^w); ctrl {
		case 0: // 0: dod 0, value unchanged
			pos++
			t += int64(tDelta)
			vb = baseline
		case 1: // 10: dod 0, value changed (a window follows: 0 the previous one, 1 a new one)
			t += int64(tDelta)
			if w&(1<<61) == 0 {
				var x uint64
				if sz <= 54 {
					x = w << 3 >> (64 - sz)
					pos += 3 + sz
				} else {
					x, pos = xor2Read(b, pos+3, uint8(sz))
				}
				baseline ^= x << trailing
			} else if sig := uint(w << 8 >> 58); sig != 0 && sig <= 43 {
				// A new window (5 bits of leading zeros, 6 of
				// significant bits) and its bits, all in w.
				leading = uint8(w << 3 >> 59)
				trailing = 64 - leading - uint8(sig)
				sz = sig
				baseline ^= w << 14 >> (64 - sig) << trailing
				pos += 14 + sig
			} else {
				baseline, leading, trailing, pos = xor2Window(b, pos+3, baseline)
				sz = uint(uint8(64 - int(leading) - int(trailing)))
			}
			vb = baseline
		case 2, 3: // 110 / 1110: a 13- / 20-bit dod, then a value
			if ctrl == 2 {
				tDelta = uint64(int64(tDelta) + int64(w<<3)>>(64-13))
				pos += 16
				w <<= 16
			} else {
				tDelta = uint64(int64(tDelta) + int64(w<<4)>>(64-20))
				pos += 24
				w <<= 24
			}
			t += int64(tDelta)
			switch {
			case w>>63 == 0: // the value unchanged
				pos++
				vb = baseline
			case w>>62 == 0b10 && sz <= 57: // the previous window
				baseline ^= xor2Peek(b, pos+2) >> (64 - sz) << trailing
				pos += 2 + sz
				vb = baseline
			default:
				vb, baseline, leading, trailing, pos = xor2Value(b, pos, baseline, leading, trailing)
				sz = uint(uint8(64 - int(leading) - int(trailing)))
			}
		case 4: // 11110: a 64-bit dod
			var dod uint64
			dod, pos = xor2Read(b, pos+5, 64)
			tDelta += dod
			t += int64(tDelta)
			vb, baseline, leading, trailing, pos = xor2Value(b, pos, baseline, leading, trailing)
			sz = uint(uint8(64 - int(leading) - int(trailing)))
		default: // 11111: dod 0, a stale marker
			pos += 5
			t += int64(tDelta)
			vb = value.StaleNaN
		}
		if pos > end {
			return ts, fs, true, errXOR2Short
		}
		if t < mint {
			continue
		}
		if t > maxt {
			break
		}
		if !dropStale || vb != value.StaleNaN {
			ts, fs = append(ts, t), append(fs, math.Float64frombits(vb))
		}
	}
	return ts, fs, true, nil
}

// xor2Value reads a value after a dod (and the second sample's): 0 the
// baseline, 10 the baseline XOR bits in the previous window, 110 a new
// window, 111 a stale marker (which leaves the baseline as it was).
func xor2Value(b []byte, pos uint, baseline uint64, leading, trailing uint8) (vb, nbaseline uint64, nleading, ntrailing uint8, npos uint) {
	w := xor2Peek(b, pos)
	switch {
	case w>>63 == 0:
		return baseline, baseline, leading, trailing, pos + 1
	case w>>62 == 0b10:
		sz := uint8(64 - int(leading) - int(trailing))
		var x uint64
		x, pos = xor2Read(b, pos+2, sz)
		baseline ^= x << trailing
		return baseline, baseline, leading, trailing, pos
	case w>>61 == 0b110:
		baseline, leading, trailing, pos = xor2Window(b, pos+3, baseline)
		return baseline, baseline, leading, trailing, pos
	}
	return value.StaleNaN, baseline, leading, trailing, pos + 3
}

// xor2Window reads a new window (5 bits of leading zeros, 6 of
// significant bits, 0 meaning 64) and the value's significant bits, with
// chunkenc's uint8 arithmetic (a corrupt window wraps as it does there).
func xor2Window(b []byte, pos uint, baseline uint64) (nbaseline uint64, leading, trailing uint8, npos uint) {
	w := xor2Peek(b, pos)
	leading = uint8(w >> (64 - 5))
	sigbits := uint8(w>>(64-11)) & 0x3f
	if sigbits == 0 {
		sigbits = 64
	}
	trailing = 64 - leading - sigbits
	var x uint64
	x, pos = xor2Read(b, pos+11, sigbits)
	return baseline ^ x<<trailing, leading, trailing, pos
}

// xor2Uvarint reads a uvarint of whole bytes at pos as chunkenc's
// bstreamReader does (no overflow check); false after ten bytes without
// an end.
func xor2Uvarint(b []byte, pos uint) (uint64, uint, bool) {
	var x uint64
	var s uint
	for range binary.MaxVarintLen64 {
		c := byte(xor2Peek(b, pos) >> 56)
		pos += 8
		if c < 0x80 {
			return x | uint64(c)<<s, pos, true
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return x, pos, false
}

// xor2Read returns the n (1..64) bits at bit position pos and the
// position after them.
func xor2Read(b []byte, pos uint, n uint8) (uint64, uint) {
	if n <= 56 {
		return xor2Peek(b, pos) >> (64 - n), pos + uint(n)
	}
	hi := xor2Peek(b, pos) >> 32
	lo := xor2Peek(b, pos+32) >> (64 - (n - 32))
	return hi<<(n-32) | lo, pos + uint(n)
}

// xor2Peek returns the bits from bit position pos on, left-aligned: at
// least 57 of them, zeros past the end of b (the caller checks its
// position against the end after each sample).
func xor2Peek(b []byte, pos uint) uint64 {
	if i := pos >> 3; i+8 <= uint(len(b)) {
		return binary.BigEndian.Uint64(b[i:]) << (pos & 7)
	}
	return xor2PeekTail(b, pos)
}

// xor2PeekTail is xor2Peek within 8 bytes of the end.
//
//go:noinline
func xor2PeekTail(b []byte, pos uint) uint64 {
	var x uint64
	for i := pos >> 3; i < pos>>3+8; i++ {
		x <<= 8
		if i < uint(len(b)) {
			x |= uint64(b[i])
		}
	}
	return x << (pos & 7)
}
