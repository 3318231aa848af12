package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// readerEpochs tracks open readers so that chunks written to Pebble are
// dropped from memory only when every open reader can find them there: a
// reader that started before a checkpoint may hold a Pebble view without
// the checkpoint's chunks.
type readerEpochs struct {
	mu      sync.Mutex
	current uint64
	active  map[uint64]int
}

func (r *readerEpochs) init() {
	r.current = 1
	r.active = map[uint64]int{}
}

func (r *readerEpochs) acquire() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[r.current]++
	return r.current
}

func (r *readerEpochs) release(e uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[e]--; r.active[e] <= 0 {
		delete(r.active, e)
	}
}

func (r *readerEpochs) advance() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.current++
	return r.current
}

// minActive is the oldest epoch a reader still holds.
func (r *readerEpochs) minActive() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.current
	for e := range r.active {
		m = min(m, e)
	}
	return m
}

// checkpointBatchBytes is the size at which a checkpoint commits the chunks
// gathered so far (without a sync; the final batch syncs). Small batches
// bound the checkpoint's transient memory: Pebble copies a batch into its
// write-ahead log buffers and keeps one larger than half a memtable whole
// in memory until it is flushed; 32 MiB batches held about 100 MiB of heap
// during each checkpoint at 100k series (bench/RESULTS.md).
const checkpointBatchBytes = checkpointBatchCap - 64<<10

// checkpointBatchCap is the capacity of the checkpoint's batch: Pebble keeps
// a batch's buffer for reuse up to 1 MiB.
const checkpointBatchCap = 1 << 20

// checkpoint writes every chunk sample not yet in Pebble, then, in one
// synced batch, records the covered write-ahead sequence and deletes the
// records it covers. Chunks are written in batches of their own first; a
// crash before the final batch leaves the records, and replaying them onto
// chunks that already hold their samples is harmless.
func (db *DB) checkpoint(ctx context.Context) error {
	return db.writeChunks(ctx, false)
}

// spillClosedBytes is how many bytes of write-ahead records, a proxy for the
// samples applied to memory, make the background loop spill closed chunks
// between checkpoints.
const spillClosedBytes = 32 << 20

// spillClosed writes the closed chunks not yet in Pebble, and the series
// records whose days changed, without a sync, and makes those chunks
// droppable: during a burst of ingest (peer-bench sends 2 h of data in
// seconds) chunks close far faster than checkpoints come, and held every
// chunk closed since the last checkpoint in memory. The write-ahead records
// stay until the next checkpoint, which does not write these chunks again;
// a crash before it replays records whose samples these chunks already hold,
// which is harmless, as for a checkpoint's own chunk batches.
func (db *DB) spillClosed(ctx context.Context) error {
	return db.writeChunks(ctx, true)
}

// writeChunks is a checkpoint, or with closedOnly a spill of closed chunks.
func (db *DB) writeChunks(ctx context.Context, closedOnly bool) (err error) {
	if err := db.health.err(); err != nil {
		return err
	}
	db.checkpointMu.Lock()
	defer db.checkpointMu.Unlock()
	// The series it writes the records of may be removed meanwhile.
	holding := db.holders.acquire()
	defer db.holders.release(holding)
	start := time.Now()

	db.applyMu.Lock()
	covered := db.seq
	walBytes := db.walBytes.Load()
	sinceSpill := db.spillBytes.Load()
	db.applyMu.Unlock()

	// The series whose chunks this call wrote, or found written and closed:
	// a bit per index into the tenant's snapshot, the samples in the chunks
	// themselves (memChunk.writing). A list of the chunks took 24 bytes per
	// series at every checkpoint, grown by doubling: at a million series,
	// tens of MB live at the time the heap is largest.
	var writes []tenantWrites
	defer func() {
		if err == nil {
			return
		}
		// Nothing a failed call wrote counts as persisted: the next call
		// writes it again.
		for _, tw := range writes {
			tw.each(func(s *memSeries) {
				s.mu.Lock()
				for c := range s.allChunks() {
					c.writing = 0
				}
				s.mu.Unlock()
			})
		}
	}()
	// One batch, reused after each commit (Pebble keeps a batch's buffer
	// on Reset up to 1 MiB): made anew for each, the batches were a seventh
	// of the garbage of ingest at a million series.
	b := db.pdb.NewBatchWithSize(checkpointBatchCap)
	defer func() { _ = b.Close() }()
	// writable waits until the records of every commit whose samples b
	// may hold are in Pebble (unwrittenCommits).
	writable := func() error {
		db.applyMu.Lock()
		upTo := db.seq
		db.applyMu.Unlock()
		if err := db.unwritten.wait(ctx, upTo); err != nil {
			return fmt.Errorf("wait for write-ahead records: %w", err)
		}
		return nil
	}
	flush := func() error {
		if b.Empty() {
			return nil
		}
		if err := writable(); err != nil {
			return err
		}
		err := b.Commit(pebble.NoSync)
		db.iters.invalidate() // before any chunk it wrote can leave memory
		if err != nil {
			return fmt.Errorf("write chunks: %w", err)
		}
		b.Reset()
		return nil
	}
	var val, encBuf, keyBuf []byte
	var scratch decimalScratch
	nChunks := 0
	for _, th := range db.tenantHeads() {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The series as of now, by id, without a copy of the list (a
		// million pointers at every checkpoint and spill).
		tw := newTenantWrites(th.series.refs.snapshot())
		writes = append(writes, tw)
		for i := range tw.size() {
			s := tw.series(i)
			if s == nil {
				continue
			}
			s.mu.Lock()
			if r := s.rare; r != nil && len(r.ooo) > 0 && !closedOnly {
				for _, c := range buildChunks(r.ooo, covered) {
					r.oooChunks = append(r.oooChunks, c)
					s.storedMaxT = max(s.storedMaxT, c.maxT)
				}
				r.ooo = nil
			}
			for c := range s.allChunks() {
				n := uint16(c.chunk.NumSamples())
				if n == 0 || (closedOnly && !c.isClosed()) {
					continue
				}
				if n == c.persisted {
					// Written whole by an earlier checkpoint, closed
					// since (the next sample cut a new chunk): it
					// becomes droppable with this checkpoint's epoch.
					if c.isClosed() && !c.droppable() {
						c.writing = n
						tw.mark(i)
					}
					continue
				}
				enc, data := storedChunk(encBuf[:0], c.chunk, &scratch)
				if enc == encDecimal {
					encBuf = data[:0] // reuse; never a chunk's own bytes
				}
				val = encodeChunkValue(val[:0], enc, c.minT, c.maxT, data)
				keyBuf = appendChunkKey(keyBuf[:0], th.id, s.ref, c.minT, c.part)
				if err := b.Set(keyBuf, val, nil); err != nil {
					s.mu.Unlock()
					return fmt.Errorf("write chunk: %w", err)
				}
				c.writing = n
				tw.mark(i)
				nChunks++
			}
			var rec []byte
			if s.flags.has(flagDurable) && s.flags.has(flagDaysDirty) {
				rec = encodeInternedSeriesRecord(nil, s.firstDay, s.lastDay, th.symbols, s.syms)
				s.flags.set(flagDaysDirty, false)
			}
			s.mu.Unlock()
			if rec != nil {
				if err := b.Set(seriesKey(th.id, s.ref), rec, nil); err != nil {
					return fmt.Errorf("write series: %w", err)
				}
			}
			if b.Len() >= checkpointBatchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if closedOnly {
			continue
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(th.maxT.Load())^(1<<63))
		if err := b.Set(tenantStateKey(th.id, "maxt"), v[:], nil); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(v[:], uint64(th.minT.Load())^(1<<63))
		if err := b.Set(tenantStateKey(th.id, "mint"), v[:], nil); err != nil {
			return err
		}
		if err := b.DeleteRange(walKey(th.id, 0), walKey(th.id, covered+1), nil); err != nil {
			return fmt.Errorf("delete WAL records: %w", err)
		}
	}
	if closedOnly {
		if err := flush(); err != nil {
			return err
		}
	} else {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], covered)
		if err := b.Set(globalKey(globalCheckpoint, ""), v[:], nil); err != nil {
			return err
		}
		if err := writable(); err != nil {
			return err
		}
		err := b.Commit(pebble.Sync)
		db.iters.invalidate() // before readers.advance
		if err != nil {
			err = fmt.Errorf("commit checkpoint: %w", err)
			db.fail(err)
			return err
		}
	}
	epoch := db.readers.advance()
	var droppable []*memSeries
	for _, tw := range writes {
		tw.each(func(s *memSeries) {
			if s.committedWrites(epoch) {
				droppable = append(droppable, s)
			}
		})
	}
	if len(droppable) > 0 {
		db.dropMu.Lock()
		db.dropQueue = append(db.dropQueue, dropBatch{epoch: epoch, series: droppable})
		db.dropMu.Unlock()
	}
	db.spillBytes.Add(-sinceSpill)
	if closedOnly {
		db.logger.Debug("spilled closed chunks", "chunks", nChunks, "duration", time.Since(start))
		return nil
	}
	db.walBytes.Add(-walBytes)
	db.lastCheckpoint.Store(time.Now().UnixNano())
	if db.metrics != nil {
		db.metrics.checkpoints.Inc()
		db.metrics.checkpointDuration.Observe(time.Since(start).Seconds())
	}
	db.logger.Debug("checkpoint", "covered", covered, "chunks", nChunks, "duration", time.Since(start))
	return nil
}

// tenantWrites are the series of one tenant whose chunks a writeChunks call
// wrote, or found written and closed: a bit per id in the tenant's series
// table (as of the call's start); the samples written are in the chunks
// (memChunk.writing).
type tenantWrites struct {
	pages []*seriesPage
	wrote []uint64
}

func newTenantWrites(pages []*seriesPage) tenantWrites {
	return tenantWrites{pages: pages, wrote: make([]uint64, len(pages)*pageSize/64)}
}

// size is the number of ids; series(i) is nil for an id without a series.
func (tw tenantWrites) size() int { return len(tw.pages) * pageSize }

func (tw tenantWrites) series(i int) *memSeries {
	return tw.pages[i>>pageBits][i&(pageSize-1)].Load()
}

func (tw tenantWrites) mark(i int) { tw.wrote[i/64] |= 1 << (i % 64) }

// each calls f with every marked series still in the table, in id order.
func (tw tenantWrites) each(f func(*memSeries)) {
	for w, word := range tw.wrote {
		for word != 0 {
			j := bits.TrailingZeros64(word)
			word &^= 1 << j
			if s := tw.series(w*64 + j); s != nil {
				f(s)
			}
		}
	}
}

// committedWrites marks the samples writeChunks wrote into s's chunks as
// persisted, once that write is committed, and the closed chunks now whole
// in Pebble droppable from epoch on; it reports whether any became
// droppable.
func (s *memSeries) committedWrites(epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	droppable := false
	for c := range s.allChunks() {
		if c.writing == 0 {
			continue
		}
		c.persisted = max(c.persisted, c.writing)
		c.writing = 0
		if c.isClosed() && int(c.persisted) == c.chunk.NumSamples() {
			c.markDroppable(epoch)
			droppable = true
		}
	}
	return droppable
}

// buildChunks encodes out-of-order samples (sorted by time) into closed
// chunks that never cross an aligned chunk range nor mix value types.
// Histogram counter-reset hints are left unknown, as in Prometheus'
// out-of-order chunks.
func buildChunks(samples []sample, part uint64) []*memChunk {
	var out []*memChunk
	var cur *memChunk
	var app chunkenc.Appender
	for _, smp := range samples {
		enc := encodingFor(smp.valueType())
		if cur == nil || cur.chunk.Encoding() != enc || smp.t >= rangeForTimestamp(cur.minT, chunkRange) || cur.chunk.NumSamples() >= math.MaxUint16-1 {
			cur = newClosedChunk(enc, smp.t, part)
			out = append(out, cur)
			app, _ = cur.chunk.Appender()
		}
		var c chunkenc.Chunk
		var recoded bool
		switch {
		case smp.h != nil:
			h := smp.h.Copy()
			h.CounterResetHint = histogram.UnknownCounterReset
			c, recoded, app, _ = app.AppendHistogram(nil, smp.st, smp.t, h, false)
		case smp.fh != nil:
			fh := smp.fh.Copy()
			fh.CounterResetHint = histogram.UnknownCounterReset
			c, recoded, app, _ = app.AppendFloatHistogram(nil, smp.st, smp.t, fh, false)
		default:
			app.Append(smp.st, smp.t, smp.v)
		}
		switch {
		case c == nil:
		case recoded:
			cur.chunk = c
		default:
			cur = &memChunk{chunk: c, minT: smp.t, part: part, state: chunkClosedBit}
			out = append(out, cur)
		}
		cur.maxT = smp.t
	}
	return out
}

func encodingFor(vt chunkenc.ValueType) chunkenc.Encoding {
	return vt.ChunkEncoding(true, true)
}

func newClosedChunk(enc chunkenc.Encoding, minT int64, part uint64) *memChunk {
	c, err := chunkenc.NewEmptyChunk(enc)
	if err != nil {
		panic(err) // enc comes from encodingFor; unreachable.
	}
	return &memChunk{chunk: c, minT: minT, maxT: math.MinInt64, part: part, state: chunkClosedBit}
}

// dropBatch lists the series that got chunks droppable from an epoch on.
type dropBatch struct {
	epoch  uint64
	series []*memSeries
}

// reclaim drops chunks from memory that every reader can find in Pebble.
func (db *DB) reclaim() {
	safe := db.readers.minActive()
	db.dropMu.Lock()
	var ready []dropBatch
	for len(db.dropQueue) > 0 && db.dropQueue[0].epoch <= safe {
		ready = append(ready, db.dropQueue[0])
		db.dropQueue = db.dropQueue[1:]
	}
	db.dropMu.Unlock()
	safeHolders := db.holders.minActive()
	for _, th := range db.tenantHeads() {
		th.symbols.collect(safe, safeHolders)
	}
	for _, b := range ready {
		for _, s := range b.series {
			s.mu.Lock()
			s.chunks = dropPersisted(s.chunks, safe, &s.storedMaxT)
			if s.rare != nil {
				s.rare.oooChunks = dropPersisted(s.rare.oooChunks, safe, &s.storedMaxT)
				s.tidyRare()
			}
			s.mu.Unlock()
		}
	}
}

// dropPersisted drops the chunks droppable at safe, raising *storedMaxT
// to the newest sample dropped.
func dropPersisted(cs []*memChunk, safe uint64, storedMaxT *int64) []*memChunk {
	keep := cs[:0]
	for _, c := range cs {
		if c.droppableBy(safe) {
			*storedMaxT = max(*storedMaxT, c.maxT)
			continue
		}
		keep = append(keep, c)
	}
	clear(cs[len(keep):])
	return keep
}

// ensureLoaded reads the newest stored sample of a series that has not been
// written to since the DB was opened. The caller holds s.mu.
func (db *DB) ensureLoaded(th *tenantHead, s *memSeries) error {
	if s.flags.has(flagLoaded) {
		return nil
	}
	for day := s.lastDay; day >= s.firstDay && day != math.MinInt32; day-- {
		best, found, err := db.newestInDay(th, s, day)
		if err != nil {
			return err
		}
		if found {
			s.lastT = best.t
			s.setLast(best.v, best.h, best.fh)
			// Every stored chunk, out-of-order ones too, ends at or
			// before it.
			s.storedMaxT = best.t
			break
		}
	}
	if s.storedMaxT == math.MaxInt64 {
		s.storedMaxT = math.MinInt64 // nothing stored
	}
	s.flags.set(flagLoaded, true)
	return nil
}

// newestInDay returns the newest sample of the series stored in a partition.
func (db *DB) newestInDay(th *tenantHead, s *memSeries, day int32) (sample, bool, error) {
	p := chunkSeriesPrefix(th.id, day, s.ref)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)})
	if err != nil {
		return sample{}, false, fmt.Errorf("read chunks: %w", err)
	}
	defer it.Close()
	var bestData []byte
	var bestEnc chunkenc.Encoding
	bestMax, bestMin := int64(math.MinInt64), int64(0)
	for it.First(); it.Valid(); it.Next() {
		kp, err := parseChunkKey(it.Key())
		if err != nil {
			return sample{}, false, err
		}
		enc, maxT, data, err := decodeChunkValue(it.Value(), kp.minT)
		if err != nil {
			return sample{}, false, fmt.Errorf("series %d: %w", s.ref, err)
		}
		if maxT > bestMax {
			bestMax, bestEnc, bestMin = maxT, enc, kp.minT
			bestData = append(bestData[:0], data...)
		}
	}
	if err := it.Error(); err != nil {
		return sample{}, false, err
	}
	if bestData == nil {
		return sample{}, false, nil
	}
	c, err := openChunk(bestEnc, bestData, bestMin)
	if err != nil {
		return sample{}, false, fmt.Errorf("series %d: %w: %w", s.ref, err, errCorruptValue)
	}
	smp, ok := chunkSampleAt(c, bestMax)
	return smp, ok, nil
}

// persistedAt looks for a stored sample of the series at t.
func (db *DB) persistedAt(th *tenantHead, s *memSeries, t int64) (sample, bool, error) {
	day := dayOf(t)
	p := chunkSeriesPrefix(th.id, day, s.ref)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)})
	if err != nil {
		return sample{}, false, fmt.Errorf("read chunks: %w", err)
	}
	defer it.Close()
	lo := alignDown(t, chunkRange)
	for it.SeekGE(chunkKey(th.id, s.ref, lo, 0)); it.Valid(); it.Next() {
		kp, err := parseChunkKey(it.Key())
		if err != nil {
			return sample{}, false, err
		}
		if kp.minT > t {
			break
		}
		enc, maxT, data, err := decodeChunkValue(it.Value(), kp.minT)
		if err != nil {
			return sample{}, false, err
		}
		if maxT < t {
			continue
		}
		c, err := openChunk(enc, append([]byte(nil), data...), kp.minT)
		if err != nil {
			return sample{}, false, fmt.Errorf("%w: %w", err, errCorruptValue)
		}
		if smp, ok := chunkSampleAt(c, t); ok {
			return smp, true, nil
		}
	}
	return sample{}, false, it.Error()
}
