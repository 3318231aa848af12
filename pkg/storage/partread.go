package storage

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// appendFloats is floatSeries.AppendFloats for a part's series: the
// series' chunks are read and decoded in one pass, those in Pebble from
// the iterator's own bytes while it is on them, without the chunk metas
// Series lists (rangeIndex.seriesChunks), the copy of every chunk it
// keeps for the read that follows (lastSeries) and the look-up of each
// chunk again there. partSeriesSet.Next leaves the chunks to it: a part is
// read by pkg/rollup, which reads each series' samples right after Next.
// ok is false, with ts and fs as they were, for a series that the caller
// should iterate instead: chunks that overlap (out-of-order samples),
// native histograms, samples with a start timestamp.
func (ps *partSeries) appendFloats(set *floatSeriesSet, ts []int64, fs []float64, mint, maxt int64, dropStale bool) (outTs []int64, outFs []float64, ok bool, err error) {
	h, s := ps.set.rh, ps.ms
	mint, maxt = max(mint, set.mint), min(maxt, set.maxt)
	// A chunk is read if it overlaps both the reader's range (as
	// seriesChunks selects them) and [mint, maxt].
	lo, hi := max(mint, h.mint), min(maxt, h.maxt)
	base := len(ts)
	r := partRead{set: set, ts: ts, fs: fs, mint: mint, maxt: maxt, dropStale: dropStale, prevMaxT: math.MinInt64}
	defer func() {
		if !ok || err != nil {
			outTs, outFs = outTs[:base], outFs[:base]
		}
	}()
	if lo > hi {
		return ts, fs, true, nil
	}

	type ident struct {
		minT int64
		part uint64
	}
	var inMemBuf [8]ident
	inMem := inMemBuf[:0]
	var memBuf, preferBuf [4]storedCopy
	mem, prefer := memBuf[:0], preferBuf[:0]
	open := storedCopy{minT: math.MinInt64}
	s.mu.Lock()
	firstDay, lastDay := s.firstDay, s.lastDay
	readsPebble := !s.memoryCovers(h.mint)
	for _, smp := range s.oooSamples() {
		if smp.t >= lo && smp.t <= hi {
			s.mu.Unlock()
			return ts, fs, false, nil
		}
	}
	for c := range s.allChunks() {
		inRange := c.maxT >= lo && c.minT <= hi
		if c.part != 0 && inRange {
			s.mu.Unlock()
			return ts, fs, false, nil
		}
		n := c.chunk.NumSamples()
		if n == 0 {
			continue
		}
		if !inRange {
			inMem = append(inMem, ident{c.minT, c.part})
			continue
		}
		cp := storedCopy{minT: c.minT, maxT: c.maxT, closed: c.isClosed(), chunk: c.chunk}
		if readsPebble && int(c.persisted) == n {
			// Read from Pebble's copy if the reader's view holds it
			// whole (seriesChunks).
			prefer = append(prefer, cp)
			continue
		}
		inMem = append(inMem, ident{c.minT, c.part})
		if cp.closed {
			mem = append(mem, cp)
		} else {
			open = cp
		}
	}
	s.mu.Unlock()

	from, to := max(dayOf(lo), firstDay), min(dayOf(hi), lastDay)
	if !readsPebble {
		to = math.MinInt32
	}
	if from <= to {
		h.iterMu.Lock()
		defer h.iterMu.Unlock()
	}
	for day := from; day <= to; day++ {
		it, err := h.dayIter(day)
		if err != nil {
			return r.ts, r.fs, false, err
		}
		prefix := chunkSeriesPrefix(h.th.id, day, s.ref)
		h.keyBuf = appendChunkKey(h.keyBuf[:0], h.th.id, s.ref, chunkScanStart(day, lo), 0)
		for it.seekGE(h.keyBuf); it.Valid(); it.next() {
			k := it.Key()
			if !hasPrefix(k, prefix) {
				break
			}
			kp, err := parseChunkKey(k)
			if err != nil {
				return r.ts, r.fs, false, err
			}
			if kp.minT > hi {
				break
			}
			if slices.Contains(inMem, ident{kp.minT, kp.part}) {
				continue
			}
			enc, maxT, data, err := decodeChunkValue(it.Value(), kp.minT)
			if err != nil {
				return r.ts, r.fs, false, fmt.Errorf("series %d: %w", s.ref, err)
			}
			if maxT < lo {
				continue
			}
			if kp.part != 0 {
				return r.ts, r.fs, false, nil
			}
			var older bool
			if prefer, older = takeStoredCopy(prefer, kp.minT, maxT); older {
				continue
			}
			// Closed chunks in memory that come before this one.
			for len(mem) > 0 && mem[0].minT < kp.minT {
				if ok, err := r.chunk(mem[0].chunk, mem[0].minT, mem[0].maxT); !ok || err != nil {
					return r.ts, r.fs, ok, err
				}
				mem = mem[1:]
			}
			if ok, err := r.stored(enc, data, kp.minT, maxT); !ok || err != nil {
				if err != nil {
					err = fmt.Errorf("series %d chunk at %d: %w", s.ref, kp.minT, err)
				}
				return r.ts, r.fs, ok, err
			}
		}
		if err := it.Error(); err != nil {
			return r.ts, r.fs, false, fmt.Errorf("read chunks: %w", err)
		}
	}
	// Chunks whose copy the reader's view of Pebble does not hold whole
	// are read from memory.
	for _, c := range prefer {
		if c.closed {
			mem = append(mem, c)
		} else {
			open = c
		}
	}
	slices.SortFunc(mem, func(a, b storedCopy) int { return cmp.Compare(a.minT, b.minT) })
	for _, c := range mem {
		if ok, err := r.chunk(c.chunk, c.minT, c.maxT); !ok || err != nil {
			return r.ts, r.fs, ok, err
		}
	}
	if open.minT != math.MinInt64 {
		// The open chunk, read in place under the series' lock, up to
		// its newest sample when it was listed.
		s.mu.Lock()
		var found bool
		for _, c := range s.chunks {
			if c.minT == open.minT && c.part == 0 {
				found = true
				ok, err = r.chunk(c.chunk, open.minT, open.maxT)
				break
			}
		}
		s.mu.Unlock()
		if !found {
			// Closed and left memory since: the caller iterates.
			return r.ts, r.fs, false, nil
		}
		if !ok || err != nil {
			return r.ts, r.fs, ok, err
		}
	}
	return r.ts, r.fs, true, nil
}

// partRead appends the samples of one series' chunks, in time order.
type partRead struct {
	set        *floatSeriesSet
	ts         []int64
	fs         []float64
	mint, maxt int64
	dropStale  bool
	// prevMaxT is the newest sample time of the chunks read so far: a
	// chunk that starts at or before it overlaps (out-of-order data).
	prevMaxT int64
}

// chunk appends the samples of an in-memory chunk spanning [minT, maxT];
// false if it overlaps the chunks before it or has other than float
// samples.
func (r *partRead) chunk(chk chunkenc.Chunk, minT, maxT int64) (bool, error) {
	if minT <= r.prevMaxT {
		return false, nil
	}
	r.prevMaxT = maxT
	var ok bool
	var err error
	r.ts, r.fs, ok, err = r.set.appendChunk(chk, r.ts, r.fs, r.mint, min(r.maxt, maxT), r.dropStale)
	return ok, err
}

// stored appends the samples of a chunk in Pebble, decoded from data
// (the iterator's bytes).
func (r *partRead) stored(enc chunkenc.Encoding, data []byte, minT, maxT int64) (bool, error) {
	if minT <= r.prevMaxT {
		return false, nil
	}
	r.prevMaxT = maxT
	if enc == encDecimal {
		var c decimalChunk
		err := c.parse(data, minT)
		if err == nil {
			r.ts, r.fs, err = c.appendFloats(r.ts, r.fs, r.mint, min(r.maxt, maxT), r.dropStale)
		}
		return err == nil, err
	}
	chk, err := openChunk(enc, data, minT)
	if err != nil {
		return false, fmt.Errorf("%w: %w", err, errCorruptValue)
	}
	var ok bool
	r.ts, r.fs, ok, err = r.set.appendChunk(chk, r.ts, r.fs, r.mint, min(r.maxt, maxT), r.dropStale)
	return ok, err
}
