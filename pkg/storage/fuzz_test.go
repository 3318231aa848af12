package storage

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"
)

// FuzzDecodeWAL feeds arbitrary bytes to the write-ahead record decoder:
// it must return an error or samples, never panic.
func FuzzDecodeWAL(f *testing.F) {
	var e walEncoder
	e.reset()
	_ = e.add(1, sample{t: 1000, v: 1})
	_ = e.add(2, sample{t: 1000, st: 900, v: math.NaN()})
	_ = e.add(2, sample{t: 2000, h: tsdbutil.GenerateTestHistogram(1)})
	_ = e.add(3, sample{t: 3000, fh: tsdbutil.GenerateTestFloatHistogram(2)})
	f.Add(append([]byte(nil), e.buf...))
	f.Add([]byte{walVersion})
	f.Add([]byte{walVersion, 0x07, 0x02})
	f.Fuzz(func(t *testing.T, rec []byte) {
		_ = decodeWAL(rec, func(uint64, sample) error { return nil })
	})
}

// FuzzWALRoundTrip encodes fuzzed float samples and decodes them back bit
// for bit.
func FuzzWALRoundTrip(f *testing.F) {
	f.Add(uint64(1), int64(1000), int64(0), uint64(0x7ff8000000000001), uint64(3), int64(-5), int64(7), uint64(0))
	f.Fuzz(func(t *testing.T, sid1 uint64, t1, st1 int64, v1 uint64, sid2 uint64, t2, st2 int64, v2 uint64) {
		in := []struct {
			sid uint64
			s   sample
		}{{sid1, sample{t: t1, st: st1, v: math.Float64frombits(v1)}}, {sid2, sample{t: t2, st: st2, v: math.Float64frombits(v2)}}}
		var e walEncoder
		e.reset()
		for _, x := range in {
			require.NoError(t, e.add(x.sid, x.s))
		}
		i := 0
		require.NoError(t, decodeWAL(e.buf, func(sid uint64, s sample) error {
			require.Equal(t, in[i].sid, sid)
			require.Equal(t, in[i].s.t, s.t)
			require.Equal(t, in[i].s.st, s.st)
			require.Equal(t, math.Float64bits(in[i].s.v), math.Float64bits(s.v))
			i++
			return nil
		}))
		require.Equal(t, 2, i)
	})
}

// FuzzChunkValue decodes arbitrary chunk values and iterates them the way
// the read path does: an error, never a panic. Histogram chunks are decoded
// only for their header: Prometheus' histogram chunk iterator trusts the
// span lengths in the chunk and allocates by them, so 60 corrupt bytes can
// ask for gigabytes (see FORMAT.md, "Integrity"). Stored chunks are
// protected by Pebble's block checksums instead.
func FuzzChunkValue(f *testing.F) {
	xor := chunkenc.NewXOR2Chunk()
	app, _ := xor.Appender()
	for i := int64(0); i < 10; i++ {
		app.Append(0, i*1000, float64(i))
	}
	f.Add(encodeChunkValue(nil, xor.Encoding(), 0, 9000, xor.Bytes()))
	if enc, b := storedChunk(nil, xor, nil); enc == encDecimal {
		f.Add(encodeChunkValue(nil, enc, 0, 9000, b)) // a decimal chunk to mutate
	}
	hc := chunkenc.NewHistogramSTChunk()
	happ, _ := hc.Appender()
	for i, h := range tsdbutil.GenerateTestHistograms(5) {
		_, _, happ, _ = happ.AppendHistogram(nil, 0, int64(i)*1000, h, true)
	}
	f.Add(encodeChunkValue(nil, hc.Encoding(), 0, 4000, hc.Bytes()))
	f.Fuzz(func(t *testing.T, v []byte) {
		readChunkValueSafely(v)
	})
}

func readChunkValueSafely(v []byte) {
	enc, _, data, err := decodeChunkValue(v, 0)
	if err != nil {
		return
	}
	c, err := openChunk(enc, append([]byte(nil), data...), 0)
	if err != nil || enc != chunkenc.EncXOR2 && enc != chunkenc.EncXOR && enc != encDecimal {
		return
	}
	_, _ = iterateChunk(c)
}

// FuzzParseChunkKey decodes arbitrary keys.
func FuzzParseChunkKey(f *testing.F) {
	f.Add(chunkKey(1, 2, 1_700_000_000_000, 0))
	f.Add(chunkKey(1, 2, -5, 9))
	f.Fuzz(func(t *testing.T, k []byte) {
		p, err := parseChunkKey(k)
		if err != nil {
			return
		}
		require.Equal(t, k, chunkKey(p.tid, p.sid, p.minT, p.part))
	})
}

// FuzzDecodeRecords decodes arbitrary series, exemplar and metadata values.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeSeriesRecord(nil, 3, 4, labels.FromStrings("__name__", "up", "job", "x")))
	f.Add(encodeMetadata(nil, nil))
	f.Fuzz(func(t *testing.T, v []byte) {
		var sb labels.ScratchBuilder
		_, _, _, _ = decodeSeriesRecord(v, &sb)
		_, _ = decodeExemplar(v, 0, &sb)
		_, _ = decodeMetadata(v)
	})
}

// FuzzDecimalChunkRoundTrip writes fuzzed float samples into a chunk,
// stores it the way checkpoints do and reads it back bit for bit.
func FuzzDecimalChunkRoundTrip(f *testing.F) {
	f.Add(int64(1_700_000_000_000), uint16(15_000), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(0))
	f.Add(int64(-5), uint16(1), []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8}, uint8(1))
	f.Add(int64(0), uint16(1000), []byte{7, 7, 7}, uint8(2))
	f.Fuzz(func(t *testing.T, t0 int64, step uint16, raw []byte, mode uint8) {
		if step == 0 || t0 > math.MaxInt64/2 || t0 < math.MinInt64/2 {
			return
		}
		var vs []float64
		switch mode % 3 {
		case 0: // decimals with two digits
			for _, b := range raw {
				vs = append(vs, float64(int(b)-100)/100)
			}
		case 1: // arbitrary bits
			for i := 0; i+8 <= len(raw); i += 8 {
				vs = append(vs, math.Float64frombits(binary.LittleEndian.Uint64(raw[i:])))
			}
		default: // counters
			acc := 0.0
			for _, b := range raw {
				acc += float64(b)
				vs = append(vs, acc)
			}
		}
		if len(vs) < 2 || len(vs) > 1000 {
			return
		}
		c := chunkenc.NewXOR2Chunk()
		app, _ := c.Appender()
		ts := make([]int64, len(vs))
		tt := t0
		for i, v := range vs {
			ts[i] = tt
			app.Append(0, tt, v)
			tt += int64(step) + int64(i%3)*int64(mode/3%2)
		}
		enc, data := storedChunk(nil, c, nil)
		got, err := openChunk(enc, append([]byte(nil), data...), ts[0])
		require.NoError(t, err)
		it := got.Iterator(nil)
		for i := range ts {
			require.Equal(t, chunkenc.ValFloat, it.Next())
			gt, gv := it.At()
			require.Equal(t, ts[i], gt)
			require.Equal(t, math.Float64bits(vs[i]), math.Float64bits(gv), "sample %d", i)
		}
		require.Equal(t, chunkenc.ValNone, it.Next())
	})
}
