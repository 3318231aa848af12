package storage

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// TestXOR2HeadMatchesChunkenc appends random series to chunkenc's XOR2
// chunk and to xor2Head and wants the same bytes after every sample, and
// the same samples back: regular and jittered scrapes, gaps in every bucket
// of the dod encoding, counters, decimals, random floats, constants, stale
// markers, negative times, start timestamps (which hand the chunk over to
// chunkenc) and more samples than the 127 the copy writes itself.
func TestXOR2HeadMatchesChunkenc(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 3000 {
		n := 1 + r.IntN(300)
		withST := iter%7 == 0
		stFrom := r.IntN(n + 1)
		ts := r.Int64N(1<<42) - 1<<41
		step := []int64{1, 15_000, 60_000, 1_000_000}[r.IntN(4)]
		v := []float64{0, 1e9, -3.5, math.Pi}[r.IntN(4)]
		shape := r.IntN(6)

		want := chunkenc.NewXOR2Chunk()
		wapp, err := want.Appender()
		if err != nil {
			t.Fatal(err)
		}
		got := newXOR2Head(r.IntN(300))
		gapp, err := got.Appender()
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			switch r.IntN(20) {
			case 0:
				ts += []int64{1 << 13, 1 << 16, 1 << 19, 1 << 21, 1 << 30, 1 << 40}[r.IntN(6)] + r.Int64N(7)
			case 1:
				ts += 1 + r.Int64N(step)
			default:
				ts += step + r.Int64N(3) - 1
			}
			switch shape {
			case 0: // constant
			case 1: // counter
				v += float64(r.IntN(100))
			case 2: // decimals
				v = math.Round(r.Float64()*1e4) / 100
			case 3:
				v = r.NormFloat64() * 1e6
			case 4: // mostly constant, sometimes a jump
				if r.IntN(10) == 0 {
					v = math.Float64frombits(r.Uint64())
				}
			case 5:
				v = float64(r.IntN(3))
			}
			val := v
			if r.IntN(30) == 0 {
				val = math.Float64frombits(value.StaleNaN)
			}
			var st int64
			if withST && i >= stFrom {
				st = ts - 1000*int64(r.IntN(3))
			}
			wapp.Append(st, ts, val)
			gapp.Append(st, ts, val)
			if !bytes.Equal(want.Bytes(), got.Bytes()) {
				t.Fatalf("series %d (shape %d, step %d, st %v) sample %d: bytes differ\nwant %x\n got %x", iter, shape, step, withST, i, want.Bytes(), got.Bytes())
			}
		}
		if got.NumSamples() != n {
			t.Fatalf("series %d: %d samples, want %d", iter, got.NumSamples(), n)
		}
		wit, git := want.Iterator(nil), got.Iterator(nil)
		for {
			wv, gv := wit.Next(), git.Next()
			if wv != gv {
				t.Fatalf("series %d: iterators disagree", iter)
			}
			if wv == chunkenc.ValNone {
				break
			}
			wt, wf := wit.At()
			gt, gf := git.At()
			if wt != gt || math.Float64bits(wf) != math.Float64bits(gf) || wit.AtST() != git.AtST() {
				t.Fatalf("series %d: sample (%d %v) want (%d %v)", iter, gt, gf, wt, wf)
			}
		}
		if git.Err() != nil {
			t.Fatal(git.Err())
		}
	}
}

// TestXOR2HeadStreamGrowsInSmallSteps: a chunk of 120 regular samples
// holds little spare capacity (chunkenc's would double to 256 bytes).
func TestXOR2HeadStreamGrowsInSmallSteps(t *testing.T) {
	h := newXOR2Head(0)
	v := 100.0
	for i := range 120 {
		v += float64(i % 7)
		h.Append(0, int64(i)*15_000, v)
	}
	b := h.Bytes()
	if spare := cap(b) - len(b); spare > len(b)/2+xor2MinGrowthBytes {
		t.Fatalf("%d bytes with %d spare", len(b), spare)
	}
	chk := chunkenc.NewXOR2Chunk()
	app, _ := chk.Appender()
	v = 100.0
	for i := range 120 {
		v += float64(i % 7)
		app.Append(0, int64(i)*15_000, v)
	}
	if !bytes.Equal(b, chk.Bytes()) {
		t.Fatal("bytes differ from chunkenc's")
	}
	t.Logf("%d bytes, capacity %d here, %d in chunkenc's chunk", len(b), cap(b), cap(chk.Bytes()))
}

// A million open chunks: xor2Head stays in the allocator's 48-byte class.
func TestXOR2HeadSize(t *testing.T) {
	if n := unsafe.Sizeof(xor2Head{}); n > 48 {
		t.Fatalf("xor2Head is %d bytes, want at most 48", n)
	}
}

// A million series: memSeries stays in the allocator's 128-byte class.
func TestMemSeriesSize(t *testing.T) {
	if n := unsafe.Sizeof(memSeries{}); n > 112 {
		t.Fatalf("memSeries is %d bytes, want at most 112", n)
	}
}

func TestMemChunkSize(t *testing.T) {
	if n := unsafe.Sizeof(memChunk{}); n > 48 {
		t.Fatalf("memChunk is %d bytes, want at most 48", n)
	}
}

// A chunk marked droppable at an epoch leaves memory once the oldest
// reader holds that epoch or a later one, across the 31-bit wrap of the
// packed epoch, and closing it or marking it keeps the other half.
func TestMemChunkDroppableEpochs(t *testing.T) {
	for _, epoch := range []uint64{1, 2, 1000, 1<<31 - 1, 1 << 31, 1<<31 + 1, 1<<32 - 1, 1 << 32, 5<<31 + 17} {
		for _, closed := range []bool{false, true} {
			var c memChunk
			if closed {
				c.state |= chunkClosedBit
			}
			if c.droppable() || c.droppableBy(epoch) {
				t.Fatalf("epoch %d: an unmarked chunk is droppable", epoch)
			}
			c.markDroppable(epoch)
			if c.isClosed() != closed || !c.droppable() {
				t.Fatalf("epoch %d: closed %v droppable %v after marking", epoch, c.isClosed(), c.droppable())
			}
			// An epoch that is 0 modulo 2^31 counts from the next one.
			from := epoch
			if epoch%(1<<31) == 0 {
				from++
			}
			for _, safe := range []uint64{from - 1, from - 1000, from - 1<<29} {
				if safe < from && c.droppableBy(safe) {
					t.Fatalf("epoch %d: droppable with the oldest reader at %d", epoch, safe)
				}
			}
			for _, safe := range []uint64{from, from + 1, from + 1000, from + 1<<29} {
				if !c.droppableBy(safe) {
					t.Fatalf("epoch %d: not droppable with the oldest reader at %d", epoch, safe)
				}
			}
			c.state |= chunkClosedBit
			if !c.droppableBy(from) {
				t.Fatalf("epoch %d: closing cleared the mark", epoch)
			}
		}
	}
}

// Each flag sets and clears its own bit only.
func TestSeriesFlags(t *testing.T) {
	all := []seriesFlags{flagDurable, flagInBatch, flagDeleted, flagDaysDirty, flagLoaded, flagHistogramEndComputed}
	for i, x := range all {
		var f seriesFlags
		for _, y := range all {
			f.set(y, true)
		}
		f.set(x, false)
		for j, y := range all {
			if f.has(y) != (i != j) {
				t.Fatalf("flag %d cleared: flag %d is %v", i, j, f.has(y))
			}
		}
		f = 0
		f.set(x, true)
		for j, y := range all {
			if f.has(y) != (i == j) {
				t.Fatalf("flag %d set: flag %d is %v", i, j, f.has(y))
			}
		}
	}
}
