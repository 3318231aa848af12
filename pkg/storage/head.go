package storage

import (
	"iter"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// chunkRange is the width of the aligned windows chunks never cross, as in
// Prometheus' head (2h). Partitions (days) are a multiple of it.
const chunkRange = 2 * 60 * 60 * 1000

// memChunk is one chunk held in memory: the open head chunk of a series, a
// closed chunk not yet dropped, or an out-of-order chunk.
type memChunk struct {
	chunk      chunkenc.Chunk
	minT, maxT int64
	part       uint64 // 0 for in-order chunks; see chunkKey

	// persisted is the number of samples of this chunk in Pebble; writing
	// the number the running checkpoint or spill wrote (or found written,
	// for a closed chunk to make droppable), which becomes persisted once
	// that write is committed, 0 otherwise. Guarded by the series' mu;
	// only writeChunks (under checkpointMu) sets writing. A chunk holds at
	// most 65535 samples (chunkenc counts them in 16 bits; in-order chunks
	// are cut far earlier, buildChunks at 65534).
	persisted, writing uint16
	// state packs closed (the top bit: no more appends) and the reader
	// epoch, modulo 2^31, from which on every reader sees the fully
	// persisted chunk in Pebble (0 while it is not fully persisted): with
	// 16-bit counts, memChunk is 48 bytes, the allocator's 48-byte class,
	// not 64 — one per series (TestMemChunkSize).
	state uint32
}

const (
	chunkClosedBit = 1 << 31
	chunkEpochMask = chunkClosedBit - 1
)

// isClosed reports whether the chunk takes no more appends.
func (c *memChunk) isClosed() bool { return c.state&chunkClosedBit != 0 }

// droppable reports whether the chunk is whole in Pebble and marked to
// leave memory (droppableBy tells from when).
func (c *memChunk) droppable() bool { return c.state&chunkEpochMask != 0 }

// markDroppable records that every reader from epoch on sees the chunk
// whole in Pebble. An epoch that is 0 modulo 2^31 is recorded as the next
// one (later is safe; 0 means not droppable).
func (c *memChunk) markDroppable(epoch uint64) {
	e := uint32(epoch) & chunkEpochMask
	if e == 0 {
		e = 1
	}
	c.state = c.state&chunkClosedBit | e
}

// droppableBy reports whether the chunk may leave memory once the oldest
// reader holds epoch safe: it is marked from an epoch at or before safe.
// The epochs compare modulo 2^31 (serial number arithmetic), which is
// right while no reader stays open across 2^30 epochs (one per checkpoint
// or spill; the background runs at most one a second).
func (c *memChunk) droppableBy(safe uint64) bool {
	e := c.state & chunkEpochMask
	return e != 0 && (uint32(safe)-e)&chunkEpochMask < 1<<30
}

// memSeries is the in-memory state of one series. Fields below mu are
// guarded by it.
type memSeries struct {
	ref uint64
	// syms are the series' labels as ids of its tenant's symbolTable
	// (~15 bytes, not a ~120-byte labels.Labels of its own); their
	// labels' Hash() finds the series in the registry.
	syms string

	mu sync.Mutex
	// idx is the series' id in the tenant's postings, 0 until it is
	// indexed (tenantHead.index); set under the tenant's idxMu. Ids are
	// 32-bit (maxIndexIDs).
	idx uint32
	// firstDay and lastDay are the partitions of the first and the newest
	// sample, as recorded in the series record.
	firstDay, lastDay int32
	// flags: durable, inBatch, deleted, daysDirty, loaded,
	// histogramEndComputed (seriesFlags). One byte, not six: with idx in
	// 32 bits, no label hash and one storedMaxT, memSeries is 112 bytes,
	// the allocator's 112-byte class (TestMemSeriesSize).
	flags seriesFlags

	chunks []*memChunk // in-order chunks by time; the last may be open
	nextAt int64

	lastT int64 // math.MinInt64 when the series has no sample
	lastV float64

	// rare is what few series need (out-of-order samples, histograms),
	// nil for the others: a million series do not carry its fields.
	rare *seriesRare

	// storedMaxT bounds the newest sample of any chunk in Pebble that
	// memory may not hold: a chunk dropped from memory, an out-of-order
	// chunk a checkpoint wrote (math.MaxInt64 when not known: after a
	// restart, until the newest stored sample is loaded), so that a read
	// after it is covered by the in-memory chunks and skips Pebble. (One
	// field for both: reads only ever asked whether either was before
	// their start; with the label hash not kept, memSeries is 112 bytes.)
	storedMaxT int64
}

// seriesFlags are a series' boolean state, a bit each. Guarded by the
// series' mu.
type seriesFlags uint8

const (
	// flagDurable is set once the series record is committed; until then
	// every appender that uses the series writes it again.
	flagDurable seriesFlags = 1 << iota
	// flagInBatch marks a new series already queued by the committing
	// appender; only set and cleared under db.applyMu.
	flagInBatch
	// flagDeleted is set when retention removed the series; appenders
	// holding it look the labels up again.
	flagDeleted
	// flagDaysDirty is set when firstDay or lastDay changed since the
	// series record was last written.
	flagDaysDirty
	// flagLoaded is clear after a restart until the newest stored sample
	// has been read back from Pebble into last*.
	flagLoaded
	// flagHistogramEndComputed mirrors Prometheus' flag for histogram
	// chunk cuts.
	flagHistogramEndComputed
)

func (f seriesFlags) has(x seriesFlags) bool { return f&x != 0 }

func (f *seriesFlags) set(x seriesFlags, on bool) {
	if on {
		*f |= x
	} else {
		*f &^= x
	}
}

// seriesRare is the state of a series that only out-of-order samples and
// histograms need. Guarded by the series' mu.
type seriesRare struct {
	ooo       []sample    // out-of-order samples not yet in a chunk, by time
	oooChunks []*memChunk // out-of-order chunks kept until droppable
	lastH     *histogram.Histogram
	lastFH    *histogram.FloatHistogram
	// app appends to the open histogram chunk. A float chunk (xor2Head)
	// is its own appender.
	app chunkenc.Appender
}

// histogramAppender is the open histogram chunk's appender, if any.
func (s *memSeries) histogramAppender() chunkenc.Appender {
	if s.rare == nil {
		return nil
	}
	return s.rare.app
}

// oooSamples are the series' out-of-order samples not yet in a chunk.
func (s *memSeries) oooSamples() []sample {
	if s.rare == nil {
		return nil
	}
	return s.rare.ooo
}

// oooChunkList are the series' out-of-order chunks in memory.
func (s *memSeries) oooChunkList() []*memChunk {
	if s.rare == nil {
		return nil
	}
	return s.rare.oooChunks
}

// allChunks yields the series' chunks in memory: the in-order ones by
// time, then the out-of-order ones. The caller holds s.mu.
func (s *memSeries) allChunks() iter.Seq[*memChunk] {
	return func(yield func(*memChunk) bool) {
		for _, c := range s.chunks {
			if !yield(c) {
				return
			}
		}
		for _, c := range s.oooChunkList() {
			if !yield(c) {
				return
			}
		}
	}
}

// lastHist is the newest sample's histogram, if it is one.
func (s *memSeries) lastHist() (*histogram.Histogram, *histogram.FloatHistogram) {
	if s.rare == nil {
		return nil, nil
	}
	return s.rare.lastH, s.rare.lastFH
}

// rareState returns s.rare, made if nil.
func (s *memSeries) rareState() *seriesRare {
	if s.rare == nil {
		s.rare = &seriesRare{}
	}
	return s.rare
}

// setLast records the newest sample's value.
func (s *memSeries) setLast(v float64, h *histogram.Histogram, fh *histogram.FloatHistogram) {
	s.lastV = v
	if h == nil && fh == nil {
		if s.rare != nil {
			s.rare.lastH, s.rare.lastFH = nil, nil
			s.tidyRare()
		}
		return
	}
	r := s.rareState()
	r.lastH, r.lastFH = h, fh
}

// tidyRare drops s.rare once it holds nothing.
func (s *memSeries) tidyRare() {
	if r := s.rare; r != nil && len(r.ooo) == 0 && len(r.oooChunks) == 0 && r.lastH == nil && r.lastFH == nil && r.app == nil {
		s.rare = nil
	}
}

func newMemSeries(ref uint64, syms string) *memSeries {
	return &memSeries{
		ref:      ref,
		syms:     syms,
		flags:    flagLoaded,
		lastT:    math.MinInt64,
		firstDay: math.MaxInt32,
		lastDay:  math.MinInt32,

		storedMaxT: math.MinInt64,
	}
}

// memoryCovers reports whether the in-memory chunks hold every sample of
// the series at or after mint: every chunk that left memory, and every
// out-of-order chunk in Pebble, ends before mint. It does not assume that
// the chunks in memory are the newest ones without a gap. The caller holds
// s.mu.
func (s *memSeries) memoryCovers(mint int64) bool {
	return s.storedMaxT < mint
}

func (s *memSeries) headChunk() *memChunk {
	if n := len(s.chunks); n > 0 && !s.chunks[n-1].isClosed() {
		return s.chunks[n-1]
	}
	return nil
}

// chunkOpts are the cut parameters of in-order chunks.
type chunkOpts struct {
	samplesPerChunk int
}

// sameAsLast reports whether smp repeats the newest sample exactly.
func (s *memSeries) sameAsLast(smp sample) bool {
	switch {
	case smp.h != nil:
		lastH, _ := s.lastHist()
		return lastH != nil && smp.h.Equals(lastH)
	case smp.fh != nil:
		_, lastFH := s.lastHist()
		return lastFH != nil && smp.fh.Equals(lastFH)
	default:
		lastH, lastFH := s.lastHist()
		return lastH == nil && lastFH == nil && math.Float64bits(smp.v) == math.Float64bits(s.lastV)
	}
}

// appendInOrder appends a sample newer than lastT to the open chunk,
// cutting a new chunk as Prometheus' head does. The caller holds s.mu.
func (s *memSeries) appendInOrder(smp sample, o chunkOpts) {
	switch {
	case smp.h != nil:
		s.appendHistogram(smp, o)
	case smp.fh != nil:
		s.appendFloatHistogram(smp, o)
	default:
		c := s.appendPreprocessor(smp.t, chunkenc.EncXOR2, o)
		app, _ := c.chunk.Appender() // the chunk itself (xor2Head)
		app.Append(smp.st, smp.t, smp.v)
		c.maxT = smp.t
		s.setLast(smp.v, nil, nil)
	}
	s.lastT = smp.t
}

func (s *memSeries) appendHistogram(smp sample, o chunkOpts) {
	prevApp := s.histogramAppender()
	c, created := s.histogramsAppendPreprocessor(smp.t, chunkenc.EncHistogramST)
	if !created {
		prevApp = nil
	}
	newChunk, recoded, app, _ := s.rare.app.AppendHistogram(prevApp, smp.st, smp.t, smp.h, false)
	s.rare.app = app
	s.setLast(0, smp.h, nil)
	s.afterHistogramAppend(c, newChunk, recoded, smp.t)
}

func (s *memSeries) appendFloatHistogram(smp sample, o chunkOpts) {
	prevApp := s.histogramAppender()
	c, created := s.histogramsAppendPreprocessor(smp.t, chunkenc.EncFloatHistogramST)
	if !created {
		prevApp = nil
	}
	newChunk, recoded, app, _ := s.rare.app.AppendFloatHistogram(prevApp, smp.st, smp.t, smp.fh, false)
	s.rare.app = app
	s.setLast(0, nil, smp.fh)
	s.afterHistogramAppend(c, newChunk, recoded, smp.t)
}

func (s *memSeries) afterHistogramAppend(c *memChunk, newChunk chunkenc.Chunk, recoded bool, t int64) {
	switch {
	case newChunk == nil:
		c.maxT = t
	case recoded:
		c.maxT = t
		c.chunk = newChunk
	default:
		c.close()
		s.chunks = append(s.chunks, &memChunk{chunk: newChunk, minT: t, maxT: t})
		s.nextAt = rangeForTimestamp(t, chunkRange)
	}
}

// appendPreprocessor mirrors Prometheus' memSeries.appendPreprocessor
// (tsdb/head_append.go): it cuts a new chunk at the end of the aligned
// chunk range, when the chunk is full, or when the encoding changes.
func (s *memSeries) appendPreprocessor(t int64, e chunkenc.Encoding, o chunkOpts) *memChunk {
	c := s.headChunk()
	created := false
	if c == nil {
		c = s.cutNewHeadChunk(t, e)
		created = true
	}
	if !created && len(c.chunk.Bytes()) > chunkenc.MaxBytesPerXORChunkBeforeAppend {
		c = s.cutNewHeadChunk(t, e)
		created = true
	}
	if c.chunk.Encoding() != e {
		c = s.cutNewHeadChunk(t, e)
		created = true
	}
	numSamples := c.chunk.NumSamples()
	if numSamples == 0 {
		c.minT = t
		s.nextAt = rangeForTimestamp(c.minT, chunkRange)
	}
	if numSamples == o.samplesPerChunk/4 {
		s.nextAt = computeChunkEndTime(c.minT, c.maxT, s.nextAt, 4)
	}
	if !created && (t >= s.nextAt || numSamples >= o.samplesPerChunk*2) {
		c = s.cutNewHeadChunk(t, e)
	}
	return c
}

// histogramsAppendPreprocessor mirrors Prometheus' function of that name.
func (s *memSeries) histogramsAppendPreprocessor(t int64, e chunkenc.Encoding) (*memChunk, bool) {
	c := s.headChunk()
	created := false
	if c == nil {
		c = s.cutNewHeadChunk(t, e)
		created = true
	}
	if c.chunk.Encoding() != e {
		c = s.cutNewHeadChunk(t, e)
		created = true
	}
	numSamples := c.chunk.NumSamples()
	targetBytes := chunkenc.TargetBytesPerHistogramChunk
	numBytes := len(c.chunk.Bytes())
	if numSamples == 0 {
		c.minT = t
		s.nextAt = rangeForTimestamp(c.minT, chunkRange)
	}
	var nextChunkRangeStart int64
	if s.flags.has(flagHistogramEndComputed) {
		nextChunkRangeStart = rangeForTimestamp(c.minT, chunkRange)
	} else {
		nextChunkRangeStart = s.nextAt
	}
	if !s.flags.has(flagHistogramEndComputed) && numBytes >= targetBytes/4 {
		ratioToFull := float64(targetBytes) / float64(numBytes)
		s.nextAt = computeChunkEndTime(c.minT, c.maxT, s.nextAt, ratioToFull)
		s.flags.set(flagHistogramEndComputed, true)
	}
	if !created && (t >= s.nextAt || numBytes >= targetBytes*2) && (numSamples >= chunkenc.MinSamplesPerHistogramChunk || t >= nextChunkRangeStart) {
		c = s.cutNewHeadChunk(t, e)
		created = true
	}
	if created {
		s.flags.set(flagHistogramEndComputed, false)
	}
	return c, created
}

// close marks the chunk as taking no more appends, and gives back the
// spare capacity its byte stream grew into (appends double it): a closed
// chunk stays in memory until a checkpoint writes it, which during a burst
// of ingest is many chunks per series.
func (c *memChunk) close() {
	c.state |= chunkClosedBit
	b := c.chunk.Bytes()
	_, head := c.chunk.(*xor2Head)
	if cap(b)-len(b) >= 32 {
		b = slices.Clone(b)
	} else if !head {
		return
	}
	// A head chunk also leaves its appender state behind.
	if chk, err := chunkenc.FromData(c.chunk.Encoding(), b); err == nil {
		c.chunk = chk
	}
}

func (s *memSeries) cutNewHeadChunk(mint int64, e chunkenc.Encoding) *memChunk {
	capHint := 0
	if h := s.headChunk(); h != nil {
		capHint = len(h.chunk.Bytes())
		h.close()
	}
	var chk chunkenc.Chunk
	if e == chunkenc.EncXOR2 {
		chk = newXOR2Head(capHint)
	} else {
		var err error
		if chk, err = chunkenc.NewEmptyChunk(e); err != nil {
			panic(err) // e is one of the encodings this file passes; unreachable.
		}
	}
	c := &memChunk{chunk: chk, minT: mint, maxT: math.MinInt64}
	s.chunks = append(s.chunks, c)
	s.nextAt = rangeForTimestamp(mint, chunkRange)
	if e == chunkenc.EncXOR2 {
		if s.rare != nil {
			s.rare.app = nil
			s.tidyRare()
		}
		return c
	}
	app, err := chk.Appender()
	if err != nil {
		panic(err) // An empty chunk always has an appender.
	}
	s.rareState().app = app
	return c
}

// rangeForTimestamp returns the end of the aligned range t is in.
func rangeForTimestamp(t, width int64) int64 {
	return alignDown(t, width) + width
}

// alignDown returns the start of the aligned range t is in (floor, also for
// negative t).
func alignDown(t, width int64) int64 {
	r := t % width
	if r < 0 {
		r += width
	}
	return t - r
}

// computeChunkEndTime is Prometheus' function of that name.
func computeChunkEndTime(start, cur, maxT int64, ratioToFull float64) int64 {
	n := float64(maxT-start) / (float64(cur-start+1) * ratioToFull)
	if n <= 1 {
		return maxT
	}
	return int64(float64(start) + float64(maxT-start)/math.Floor(n))
}

// oooFind returns the index of the out-of-order sample at t, or where it
// would be inserted, and whether it is there.
func (s *memSeries) oooFind(t int64) (int, bool) {
	ooo := s.oooSamples()
	i := sort.Search(len(ooo), func(i int) bool { return ooo[i].t >= t })
	return i, i < len(ooo) && ooo[i].t == t
}

// insertOOO keeps an out-of-order sample. It returns false if a different
// value is already buffered at the same time.
func (s *memSeries) insertOOO(smp sample) bool {
	i, found := s.oooFind(smp.t)
	if found {
		return sameSample(s.rare.ooo[i], smp)
	}
	r := s.rareState()
	r.ooo = append(r.ooo, sample{})
	copy(r.ooo[i+1:], r.ooo[i:])
	r.ooo[i] = smp
	return true
}

// sameSample reports whether two samples have the same value, bit for bit
// for floats.
func sameSample(a, b sample) bool {
	switch {
	case a.h != nil:
		return b.h != nil && a.h.Equals(b.h)
	case a.fh != nil:
		return b.fh != nil && a.fh.Equals(b.fh)
	default:
		return b.h == nil && b.fh == nil && math.Float64bits(a.v) == math.Float64bits(b.v)
	}
}

// inMemoryAt looks for a sample at t in the series' memory.
func (s *memSeries) inMemoryAt(t int64) (sample, bool) {
	if i, ok := s.oooFind(t); ok {
		return s.rare.ooo[i], true
	}
	for c := range s.allChunks() {
		if c.chunk.NumSamples() == 0 || t < c.minT || t > c.maxT {
			continue
		}
		if smp, ok := chunkSampleAt(c.chunk, t); ok {
			return smp, true
		}
	}
	return sample{}, false
}

// chunkSampleAt decodes the sample at t from a chunk.
func chunkSampleAt(c chunkenc.Chunk, t int64) (sample, bool) {
	it := c.Iterator(nil)
	vt := it.Seek(t)
	if vt == chunkenc.ValNone || it.AtT() != t {
		return sample{}, false
	}
	return iteratorSample(it, vt), true
}

func iteratorSample(it chunkenc.Iterator, vt chunkenc.ValueType) sample {
	smp := sample{t: it.AtT(), st: it.AtST()}
	switch vt {
	case chunkenc.ValFloat:
		_, smp.v = it.At()
	case chunkenc.ValHistogram:
		_, smp.h = it.AtHistogram(nil)
	case chunkenc.ValFloatHistogram:
		_, smp.fh = it.AtFloatHistogram(nil)
	}
	return smp
}
