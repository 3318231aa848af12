package storage

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/tsdb/tombstones"
	"github.com/prometheus/prometheus/util/annotations"
)

// Querier returns a querier over [mint, maxt]. Each call reads the tenant
// from its context. Reading is done by Prometheus' own block querier
// (tsdb.NewBlockQuerier) over a view of one tenant (rangeHead), so matcher,
// label and trimming semantics are Prometheus'.
func (db *DB) Querier(mint, maxt int64) (storage.Querier, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return &querier{db: db, mint: mint, maxt: maxt, open: map[*tenantHead]*tenantQuerier{}}, nil
}

// ChunkQuerier returns a chunk querier over [mint, maxt].
func (db *DB) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return &chunkQuerier{querier{db: db, mint: mint, maxt: maxt, open: map[*tenantHead]*tenantQuerier{}}}, nil
}

type tenantQuerier struct {
	rh *rangeHead
	q  storage.Querier
	cq storage.ChunkQuerier
}

type querier struct {
	db         *DB
	mint, maxt int64

	mu   sync.Mutex
	open map[*tenantHead]*tenantQuerier
	// parts are the series of the selects made in parts (WithPart), by
	// matchers; partReaders read the parts.
	parts       map[string]*partList
	partReaders []*tenantQuerier
}

// What forTenant makes of the tenant's reader: the reader alone (a part's
// select reads through a reader of its own), or with Prometheus' block
// querier or chunk querier over it.
const (
	tenantReader = iota
	tenantBlockQuerier
	tenantChunkQuerier
)

func (q *querier) forTenant(ctx context.Context, want int) (*tenantQuerier, error) {
	th := q.db.tenantFor(ctx)
	if th == nil {
		return nil, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	tq := q.open[th]
	if tq == nil {
		tq = &tenantQuerier{rh: q.db.newRangeHead(th, q.mint, q.maxt)}
		tq.rh.standardChunks = want == tenantChunkQuerier
		q.open[th] = tq
	}
	var err error
	if want == tenantChunkQuerier && tq.cq == nil {
		tq.cq, err = tsdb.NewBlockChunkQuerier(tq.rh, q.mint, q.maxt)
	}
	if want == tenantBlockQuerier && tq.q == nil {
		tq.q, err = tsdb.NewBlockQuerier(tq.rh, q.mint, q.maxt)
	}
	return tq, err
}

func (q *querier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	p, inPart := partFrom(ctx)
	seriesOnly := hints != nil && hints.Func == "series"
	asPart := !seriesOnly && inPart && !sortSeries && (hints == nil || hints.Limit == 0)
	want := tenantBlockQuerier
	if seriesOnly || asPart {
		want = tenantReader // Prometheus' block querier is not used
	}
	tq, err := q.forTenant(ctx, want)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if tq == nil {
		if inPart {
			p.served.Store(true)
			p.last.Store(true)
		}
		return storage.EmptySeriesSet()
	}
	if seriesOnly {
		return tq.rh.selectSeriesOnly(ctx, sortSeries, tq.rh.shardHints(ctx, hints), ms...)
	}
	if asPart {
		return q.selectPart(ctx, tq, p, hints, ms...)
	}
	return q.floatSet(tq.q.Select(ctx, sortSeries, tq.rh.shardHints(ctx, hints), ms...), tq.rh, hints)
}

// floatSet is set, read through h, as a floatSeriesSet.
func (q *querier) floatSet(set storage.SeriesSet, h *rangeHead, hints *storage.SelectHints) storage.SeriesSet {
	fset := &floatSeriesSet{SeriesSet: set, h: h, mint: q.mint, maxt: q.maxt}
	if hints != nil {
		// The block querier trims the series' samples to the hints' range.
		fset.mint, fset.maxt = hints.Start, hints.End
		if hints.DisableTrimming {
			fset.mint, fset.maxt = math.MinInt64, math.MaxInt64
		}
	}
	return fset
}

// shardHints applies the shard of ctx (WithShard) to a select: the block
// querier then asks ShardedPostings for it.
func (h *rangeHead) shardHints(ctx context.Context, hints *storage.SelectHints) *storage.SelectHints {
	spec, ok := shardFrom(ctx)
	if !ok {
		return hints
	}
	h.mu.Lock()
	h.shard = &spec
	h.mu.Unlock()
	c := storage.SelectHints{}
	if hints != nil {
		c = *hints
	}
	c.ShardIndex, c.ShardCount = spec.Index, spec.Count
	return &c
}

func (q *querier) labelQuerier(ctx context.Context) (storage.LabelQuerier, error) {
	tq, err := q.forTenant(ctx, tenantBlockQuerier)
	if err != nil || tq == nil {
		return nil, err
	}
	return tq.q, nil
}

func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	lq, err := q.labelQuerier(ctx)
	if err != nil || lq == nil {
		return nil, nil, err
	}
	return lq.LabelValues(ctx, name, hints, ms...)
}

func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	lq, err := q.labelQuerier(ctx)
	if err != nil || lq == nil {
		return nil, nil, err
	}
	return lq.LabelNames(ctx, hints, ms...)
}

func (q *querier) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var firstErr error
	for th, tq := range q.open {
		for _, c := range []interface{ Close() error }{tq.q, tq.cq} {
			if c == nil {
				continue
			}
			if err := c.Close(); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		tq.rh.close()
		delete(q.open, th)
	}
	for _, tq := range q.partReaders {
		if tq.q != nil {
			if err := tq.q.Close(); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		tq.rh.close()
	}
	q.partReaders, q.parts = nil, nil
	return firstErr
}

type chunkQuerier struct{ querier }

func (q *chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	tq, err := q.forTenant(ctx, tenantChunkQuerier)
	if err != nil {
		return storage.ErrChunkSeriesSet(err)
	}
	if tq == nil {
		return storage.EmptyChunkSeriesSet()
	}
	return tq.cq.Select(ctx, sortSeries, tq.rh.shardHints(ctx, hints), ms...)
}

func (q *chunkQuerier) labelQuerier(ctx context.Context) (storage.LabelQuerier, error) {
	tq, err := q.forTenant(ctx, tenantChunkQuerier)
	if err != nil || tq == nil {
		return nil, err
	}
	return tq.cq, nil
}

func (q *chunkQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	lq, err := q.labelQuerier(ctx)
	if err != nil || lq == nil {
		return nil, nil, err
	}
	return lq.LabelValues(ctx, name, hints, ms...)
}

func (q *chunkQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	lq, err := q.labelQuerier(ctx)
	if err != nil || lq == nil {
		return nil, nil, err
	}
	return lq.LabelNames(ctx, hints, ms...)
}

// rangeHead is a tsdb.BlockReader over one tenant's data in [mint, maxt]:
// the in-memory index, the in-memory chunks and the chunks in Pebble. It
// holds a reader epoch from creation to close so that the chunks it may
// need stay in memory or in its Pebble view.
type rangeHead struct {
	db         *DB
	th         *tenantHead
	mint, maxt int64
	epoch      uint64

	// iterMu serializes the use of iters: a Pebble iterator is not safe
	// for concurrent use, and Series calls of one reader share them.
	iterMu sync.Mutex
	mu     sync.Mutex
	iters  map[int32]*chunkIter
	merged []mergedIterable // chunk groups that overlap; ChunkRef i+1 names merged[i]
	// lazyParts are the out-of-order chunks in Pebble of lazyRef.
	lazyParts []lazyPart
	keyBuf    []byte // readLazy's key; guarded by iterMu
	// last keeps the bytes of the chunks the last Series read from
	// Pebble, for a reader that iterates each series right after
	// selecting it (rollups, remote read): its reads then need no seek
	// back. One series at most; guarded by iterMu.
	last   lastSeries
	closed bool
	// standardChunks converts levitated's own chunk encodings and XOR2
	// to Prometheus' standard ones for readers that hand chunks on.
	standardChunks bool
	// shard, when set (WithShard), is how ShardedPostings shards.
	shard *ShardSpec
	// part is the series of a part's reader (selectPart), which its
	// index's postings of partLabel are.
	part []storage.SeriesRef

	// The chunk metas Series listed last, for floatSeries.AppendFloats
	// (noteSeries); curGen counts the Series that noted theirs.
	curMu     sync.Mutex
	curGen    uint64
	curSeries *memSeries
	curLset   labels.Labels
	curMetas  []chunks.Meta
}

func (db *DB) newRangeHead(th *tenantHead, mint, maxt int64) *rangeHead {
	h := &rangeHead{db: db, th: th, mint: mint, maxt: maxt, epoch: db.readers.acquire()}
	if l, ok := lastBufs.Get().(*lastSeries); ok {
		h.last = *l
	}
	return h
}

func (h *rangeHead) close() {
	h.iterMu.Lock()
	defer h.iterMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for day, it := range h.iters {
		_ = h.db.iters.put(iterPoolKey{h.th.id, day}, it.it, it.gen)
	}
	h.iters = nil
	h.merged = nil
	h.lazyParts = nil
	if cap(h.last.buf) > 0 && cap(h.last.buf) <= maxPooledLast {
		h.last.reset()
		l := h.last
		lastBufs.Put(&l)
	}
	h.last = lastSeries{}
	h.db.readers.release(h.epoch)
}

func (h *rangeHead) Index() (tsdb.IndexReader, error)  { return (*rangeIndex)(h), nil }
func (h *rangeHead) Chunks() (tsdb.ChunkReader, error) { return (*rangeChunks)(h), nil }
func (h *rangeHead) Tombstones() (tombstones.Reader, error) {
	return tombstones.NewMemTombstones(), nil
}
func (h *rangeHead) Size() int64 { return 0 }
func (h *rangeHead) Meta() tsdb.BlockMeta {
	return tsdb.BlockMeta{ULID: ulid.ULID{}, MinTime: h.mint, MaxTime: h.maxt}
}

// outside reports whether the tenant has no data in the range.
func (h *rangeHead) outside() bool {
	return h.maxt < h.th.minT.Load() || h.mint > h.th.maxT.Load()
}

// rangeIndex implements tsdb.IndexReader over the tenant's postings.
type rangeIndex rangeHead

func (r *rangeIndex) Close() error { return nil }

func (r *rangeIndex) Symbols() index.StringIter { return r.th.postings.Symbols() }

func (r *rangeIndex) SortedLabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, error) {
	values, err := r.LabelValues(ctx, name, hints, ms...)
	if err == nil {
		slices.Sort(values)
	}
	return values, err
}

func (r *rangeIndex) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, error) {
	if (*rangeHead)(r).outside() {
		return []string{}, nil
	}
	if len(ms) == 0 {
		return r.th.postings.LabelValues(ctx, name, hints), nil
	}
	return labelValuesWithMatchers(ctx, r, name, hints, ms...)
}

func (r *rangeIndex) LabelNames(ctx context.Context, ms ...*labels.Matcher) ([]string, error) {
	if (*rangeHead)(r).outside() {
		return []string{}, nil
	}
	if len(ms) == 0 {
		names := r.th.postings.LabelNames()
		slices.Sort(names)
		return names, nil
	}
	p, err := tsdb.PostingsForMatchers(ctx, r, ms...)
	if err != nil {
		return nil, err
	}
	return r.LabelNamesFor(ctx, p)
}

func (r *rangeIndex) Postings(ctx context.Context, name string, values ...string) (index.Postings, error) {
	if name == partLabel {
		return index.NewListPostings(r.part), nil
	}
	return r.th.postings.Postings(ctx, name, values...), nil
}

func (r *rangeIndex) PostingsForLabelMatching(ctx context.Context, name string, match func(string) bool) index.Postings {
	return r.th.postings.PostingsForLabelMatching(ctx, name, match)
}

func (r *rangeIndex) PostingsForAllLabelValues(ctx context.Context, name string) index.Postings {
	return r.th.postings.PostingsForAllLabelValues(ctx, name)
}

func (r *rangeIndex) SortedPostings(p index.Postings) index.Postings {
	var ss []*memSeries
	for p.Next() {
		if s := r.th.getByIdx(uint64(p.At())); s != nil {
			ss = append(ss, s)
		}
	}
	if err := p.Err(); err != nil {
		return index.ErrPostings(fmt.Errorf("expand postings: %w", err))
	}
	syms := r.th.symbols
	slices.SortFunc(ss, func(a, b *memSeries) int { return syms.compare(a.syms, b.syms) })
	refs := make([]storage.SeriesRef, len(ss))
	for i, s := range ss {
		refs[i] = storage.SeriesRef(s.idx)
	}
	return index.NewListPostings(refs)
}

// ShardedPostings keeps the series of p in the shard, as p is read: a
// list of the shard's series would be made for every sharded select.
func (r *rangeIndex) ShardedPostings(p index.Postings, shardIndex, shardCount uint64) index.Postings {
	r.mu.Lock()
	spec := r.shard
	r.mu.Unlock()
	syms := r.th.symbols
	keep := func(s *memSeries) bool { return syms.stableHash(s.syms)%shardCount == shardIndex }
	if spec != nil {
		keep = func(s *memSeries) bool { return spec.containsInterned(syms, s.syms) }
	}
	return &shardedPostings{Postings: p, th: r.th, keep: keep}
}

// shardedPostings is the postings of p whose series are (still) there and
// keep.
type shardedPostings struct {
	index.Postings
	th   *tenantHead
	keep func(*memSeries) bool
}

func (p *shardedPostings) Next() bool {
	for p.Postings.Next() {
		if p.kept() {
			return true
		}
	}
	return false
}

func (p *shardedPostings) Seek(v storage.SeriesRef) bool {
	if !p.Postings.Seek(v) {
		return false
	}
	return p.kept() || p.Next()
}

func (p *shardedPostings) kept() bool {
	s := p.th.getByIdx(uint64(p.Postings.At()))
	return s != nil && p.keep(s)
}

func (r *rangeIndex) LabelNamesFor(ctx context.Context, p index.Postings) ([]string, error) {
	names := map[string]struct{}{}
	for i := 0; p.Next(); i++ {
		if i%100 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if s := r.th.getByIdx(uint64(p.At())); s != nil {
			pages := r.th.symbols.loadPages()
			for i := 0; i < len(s.syms); {
				var name string
				name, _, i = pairAt(pages, s.syms, i)
				names[name] = struct{}{}
			}
		}
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// Series fills the labels and the chunk metas, with chunk data, of a series
// in the range: in-memory chunks first, then chunks in Pebble that memory
// does not hold. Overlapping chunks (out-of-order data) are grouped into one
// meta whose ChunkRef names a merge.
func (r *rangeIndex) Series(ref storage.SeriesRef, builder *labels.ScratchBuilder, chks *[]chunks.Meta) error {
	s := r.th.getByIdx(uint64(ref))
	if s == nil {
		return storage.ErrNotFound
	}
	// The labels are built here (one allocation, their size), for the
	// caller's builder.Labels() to return them and noteSeries to keep.
	lset := r.th.symbols.labels(s.syms, builder)
	builder.Assign(lset)
	return r.seriesChunks(s, lset, chks)
}

// seriesChunks fills the chunk metas of s as Series does; lset are its
// labels if built (noted with the metas), empty for a part's series,
// which builds them only when asked (partSeries.Labels).
func (r *rangeIndex) seriesChunks(s *memSeries, lset labels.Labels, chks *[]chunks.Meta) error {
	h := (*rangeHead)(r)
	*chks = (*chks)[:0]
	var ex *exporter
	if h.standardChunks {
		ex = exporters.Get().(*exporter)
		defer exporters.Put(ex)
	}

	type ident struct {
		minT int64
		part uint64
	}
	// inMem lists the chunks memory holds (a few), which Pebble's
	// copies of are not read.
	var inMemBuf [8]ident
	inMem := inMemBuf[:0]
	// prefer lists in-order chunks in memory that Pebble holds whole,
	// read from Pebble if the reader's view has them whole.
	var preferBuf [4]storedCopy
	prefer := preferBuf[:0]
	s.mu.Lock()
	firstDay, lastDay := s.firstDay, s.lastDay
	readsPebble := !s.memoryCovers(h.mint)
	if !readsPebble {
		lastDay = math.MinInt32 // nothing to read from Pebble
	}
	for c := range s.allChunks() {
		if c.maxT < h.mint || c.minT > h.maxt {
			if c.chunk.NumSamples() != 0 {
				inMem = append(inMem, ident{c.minT, c.part})
			}
			continue
		}
		n := c.chunk.NumSamples()
		if n == 0 {
			continue
		}
		if readsPebble && !h.standardChunks && c.part == 0 && int(c.persisted) == n && chunks.ChunkRef(s.ref) < lazyHeadRef {
			// Pebble holds the chunk whole (the last checkpoint
			// wrote it): its stored encoding (decimal) decodes
			// several times faster than the head's XOR2 with
			// Prometheus' iterator, and the reader steps past it in
			// Pebble anyway. Right after a flush every series'
			// open chunk is so. Kept in memory if the reader's
			// view of Pebble predates that checkpoint.
			prefer = append(prefer, storedCopy{minT: c.minT, maxT: c.maxT, closed: c.isClosed(), chunk: c.chunk})
			continue
		}
		inMem = append(inMem, ident{c.minT, c.part})
		chk := c.chunk
		var err error
		switch {
		case h.standardChunks && chk.Encoding() == chunkenc.EncXOR2:
			// Re-encoded under s.mu: a copy of the open chunk.
			chk, err = ex.chunk(chk)
		case !c.isClosed() && !h.standardChunks && c.part == 0 && chunks.ChunkRef(s.ref) < lazyHeadRef:
			// Copied when the series is iterated (ChunkOrIterable).
			*chks = append(*chks, chunks.Meta{Ref: lazyChunkRef | lazyHeadRef | chunks.ChunkRef(s.ref), MinTime: c.minT, MaxTime: c.maxT})
			continue
		case !c.isClosed():
			chk, err = chunkenc.FromData(chk.Encoding(), slices.Clone(chk.Bytes()))
		}
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("copy head chunk: %w", err)
		}
		*chks = append(*chks, chunks.Meta{Chunk: chk, MinTime: c.minT, MaxTime: c.maxT})
	}
	if ooo := s.oooSamples(); len(ooo) > 0 {
		var buf []sample
		for _, smp := range ooo {
			if smp.t >= h.mint && smp.t <= h.maxt {
				buf = append(buf, smp)
			}
		}
		for _, c := range buildChunks(buf, 0) {
			chk := c.chunk
			if h.standardChunks {
				var err error
				if chk, err = ex.chunk(chk); err != nil {
					s.mu.Unlock()
					return fmt.Errorf("out-of-order chunk: %w", err)
				}
			}
			*chks = append(*chks, chunks.Meta{Chunk: chk, MinTime: c.minT, MaxTime: c.maxT})
		}
	}
	s.mu.Unlock()

	from, to := max(dayOf(h.mint), firstDay), min(dayOf(h.maxt), lastDay)
	if from <= to {
		h.iterMu.Lock()
		defer h.iterMu.Unlock()
		h.last.reset()
	}
	locked := from <= to
	for day := from; day <= to; day++ {
		it, err := h.dayIter(day)
		if err != nil {
			return err
		}
		prefix := chunkSeriesPrefix(h.th.id, day, s.ref)
		h.keyBuf = appendChunkKey(h.keyBuf[:0], h.th.id, s.ref, chunkScanStart(day, h.mint), 0)
		for it.seekGE(h.keyBuf); it.Valid(); it.next() {
			k := it.Key()
			if !hasPrefix(k, prefix) {
				break
			}
			kp, err := parseChunkKey(k)
			if err != nil {
				return err
			}
			if kp.minT > h.maxt {
				break
			}
			if slices.Contains(inMem, ident{kp.minT, kp.part}) {
				continue
			}
			enc, maxT, data, err := decodeChunkValue(it.Value(), kp.minT)
			if err != nil {
				return fmt.Errorf("series %d: %w", s.ref, err)
			}
			if kp.part == 0 {
				var older bool
				if prefer, older = takeStoredCopy(prefer, kp.minT, maxT); older {
					continue
				}
			}
			if maxT < h.mint {
				continue
			}
			if !h.standardChunks {
				// Read when the series is iterated (ChunkOrIterable),
				// so that a query holds the chunk bytes of the series
				// it is iterating, not of every series it selected.
				if ref, ok := h.lazyRef(s.ref, kp.part); ok {
					*chks = append(*chks, chunks.Meta{Ref: ref, MinTime: kp.minT, MaxTime: maxT})
					h.last.add(s.ref, kp.minT, kp.part, enc, data)
					continue
				}
			}
			var chk chunkenc.Chunk
			switch {
			case h.standardChunks && enc == encDecimal:
				// Decoded from Pebble's bytes, which stay valid until
				// the iterator moves.
				chk, err = ex.decimal(data, kp.minT)
			case h.standardChunks:
				if chk, err = openChunk(enc, slices.Clone(data), kp.minT); err == nil {
					chk, err = ex.chunk(chk)
				}
			default:
				chk, err = openChunk(enc, slices.Clone(data), kp.minT)
			}
			if err != nil {
				return fmt.Errorf("series %d chunk at %d: %w: %w", s.ref, kp.minT, err, errCorruptValue)
			}
			*chks = append(*chks, chunks.Meta{Chunk: chk, MinTime: kp.minT, MaxTime: maxT})
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("read chunks: %w", err)
		}
	}
	// The chunks whose copy the reader's view of Pebble does not hold
	// whole are read from memory, as others are.
	for _, c := range prefer {
		*chks = append(*chks, c.meta(s.ref))
	}
	if err := h.groupOverlaps(chks, locked); err != nil {
		return err
	}
	if !h.standardChunks {
		h.noteSeries(s, lset, *chks)
	}
	return nil
}

// storedCopy is an in-order chunk in memory that Pebble holds whole
// (seriesChunks).
type storedCopy struct {
	minT, maxT int64
	closed     bool
	chunk      chunkenc.Chunk
}

// takeStoredCopy matches the in-order chunk Pebble holds at minT, ending
// at maxT, with the in-memory chunk of prefer that starts there, if any:
// the match leaves prefer (Pebble's copy is read), unless Pebble's copy
// ends before memory's — an older copy, written before the chunk's last
// samples, which the caller skips (older) and reads memory's instead.
func takeStoredCopy(prefer []storedCopy, minT, maxT int64) (rest []storedCopy, older bool) {
	i := slices.IndexFunc(prefer, func(c storedCopy) bool { return c.minT == minT })
	switch {
	case i < 0:
		return prefer, false
	case maxT != prefer[i].maxT:
		return prefer, true
	}
	return slices.Delete(prefer, i, i+1), false
}

// chunkScanStart is the time of the first chunk key of a day's partition
// a read of samples from mint on must look at: the start of mint's
// aligned chunk range (a chunk never crosses one), or the day's start
// (from math.MinInt64, which alignDown would overflow).
func chunkScanStart(day int32, mint int64) int64 {
	start := int64(day) * dayMillis
	if mint == math.MinInt64 {
		return start
	}
	return max(alignDown(mint, chunkRange), start)
}

// meta is the chunk's meta when read from memory, as seriesChunks makes
// it for other chunks: the open chunk of series sref is copied when the
// series is iterated (lazyHeadRef), a closed one is read in place (it
// takes no more appends).
func (c storedCopy) meta(sref uint64) chunks.Meta {
	if !c.closed {
		return chunks.Meta{Ref: lazyChunkRef | lazyHeadRef | chunks.ChunkRef(sref), MinTime: c.minT, MaxTime: c.maxT}
	}
	return chunks.Meta{Chunk: c.chunk, MinTime: c.minT, MaxTime: c.maxT}
}

func cmpMinTime(a, b chunks.Meta) int { return cmp.Compare(a.MinTime, b.MinTime) }

func hasPrefix(k, p []byte) bool {
	return len(k) >= len(p) && string(k[:len(p)]) == string(p)
}

// groupOverlaps sorts metas by time and replaces every group of
// overlapping chunks by one meta that refers to a merge of the group.
// locked tells whether the caller holds iterMu.
func (h *rangeHead) groupOverlaps(chks *[]chunks.Meta, locked bool) error {
	cs := *chks
	if !slices.IsSortedFunc(cs, cmpMinTime) {
		slices.SortStableFunc(cs, cmpMinTime)
	}
	overlap := false
	for i := 1; i < len(cs); i++ {
		if cs[i].MinTime <= cs[i-1].MaxTime {
			overlap = true
			break
		}
	}
	if !overlap {
		return nil
	}
	out := cs[:0:0]
	for i := 0; i < len(cs); {
		j, maxT := i+1, cs[i].MaxTime
		for j < len(cs) && cs[j].MinTime <= maxT {
			maxT = max(maxT, cs[j].MaxTime)
			j++
		}
		if j-i == 1 {
			out = append(out, cs[i])
		} else {
			group := make(mergedIterable, j-i)
			for k, m := range cs[i:j] {
				if m.Chunk != nil {
					group[k] = m.Chunk
					continue
				}
				// A chunk read lazily is read now: a merge iterates
				// its chunks itself.
				chk, it, err := h.readLazy(m, locked)
				if err != nil {
					return err
				}
				if it != nil {
					group[k] = it
				} else {
					group[k] = chk
				}
			}
			h.mu.Lock()
			h.merged = append(h.merged, group)
			ref := chunks.ChunkRef(len(h.merged))
			h.mu.Unlock()
			out = append(out, chunks.Meta{Ref: ref, MinTime: cs[i].MinTime, MaxTime: maxT})
		}
		i = j
	}
	*chks = out
	return nil
}

// dayIter returns the reader's iterator over one partition's chunks.
func (h *rangeHead) dayIter(day int32) (*chunkIter, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if it := h.iters[day]; it != nil {
		return it, nil
	}
	pit, gen := h.db.iters.get(iterPoolKey{h.th.id, day})
	if pit == nil {
		p := chunkDayPrefix(h.th.id, day)
		var err error
		if pit, err = h.db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)}); err != nil {
			return nil, fmt.Errorf("read chunks: %w", err)
		}
	}
	it := &chunkIter{it: pit, gen: gen}
	if h.iters == nil {
		h.iters = make(map[int32]*chunkIter, 1)
	}
	h.iters[day] = it
	return it, nil
}

// Chunk references of metas whose chunk is read when the series is
// iterated (ChunkOrIterable), so that a query holds the chunks of the series
// it is iterating, not of every series it selected:
//   - lazyChunkRef | series ref: an in-order chunk (part 0) in Pebble;
//   - lazyChunkRef | lazyPartRef | i: the chunk in Pebble lazyParts[i] names;
//   - lazyChunkRef | lazyHeadRef | series ref: the series' open chunk in
//     memory, copied then (or read from Pebble if it left memory since).
//
// Other references without a chunk name merged groups.
const (
	lazyChunkRef = chunks.ChunkRef(1) << 63
	lazyPartRef  = chunks.ChunkRef(1) << 62
	lazyHeadRef  = chunks.ChunkRef(1) << 61
)

// lazyPart names a chunk of a part other than 0 (out-of-order).
type lazyPart struct{ sref, part uint64 }

// lazyRef returns the reference of a series' chunk in Pebble, false if it
// has none (a series reference too large for one).
func (h *rangeHead) lazyRef(sref, part uint64) (chunks.ChunkRef, bool) {
	if part == 0 {
		if chunks.ChunkRef(sref) >= lazyHeadRef {
			return 0, false
		}
		return lazyChunkRef | chunks.ChunkRef(sref), true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lazyParts = append(h.lazyParts, lazyPart{sref, part})
	return lazyChunkRef | lazyPartRef | chunks.ChunkRef(len(h.lazyParts)-1), true
}

// readLazy returns the chunk of a meta from lazyRef or Series' head
// references: from memory, or from the reader's view of Pebble (the
// iterators Series read with). locked tells whether the caller holds
// iterMu. The chunk is not kept: the next read of the series reads again.
// A chunk that has more samples than when Series listed it (an open chunk
// appended to since) comes as an iterable that ends at the meta's MaxTime,
// so that a reader sees what it would have seen at Series.
func (h *rangeHead) readLazy(meta chunks.Meta, locked bool) (chunkenc.Chunk, chunkenc.Iterable, error) {
	if meta.Ref&lazyHeadRef != 0 {
		var (
			chk  chunkenc.Chunk
			maxT int64
			err  error
		)
		found := h.withHeadChunk(meta, func(c *memChunk) {
			chk, maxT = c.chunk, c.maxT
			if !c.isClosed() {
				chk, err = chunkenc.FromData(chk.Encoding(), slices.Clone(chk.Bytes()))
			}
		})
		if err != nil {
			return nil, nil, fmt.Errorf("copy head chunk: %w", err)
		}
		if found {
			return capped(chk, maxT, meta.MaxTime)
		}
		// Left memory since Series: every reader finds it in Pebble.
	}
	if !locked {
		h.iterMu.Lock()
		defer h.iterMu.Unlock()
	}
	sref, enc, maxT, data, err := h.storedChunk(meta)
	if err != nil {
		return nil, nil, err
	}
	chk, err := openChunk(enc, slices.Clone(data), meta.MinTime)
	if err != nil {
		return nil, nil, fmt.Errorf("series %d chunk at %d: %w: %w", sref, meta.MinTime, err, errCorruptValue)
	}
	return capped(chk, maxT, meta.MaxTime)
}

// withHeadChunk calls f, under the series' lock, with the in-memory chunk
// a lazyHeadRef meta names; false if memory no longer holds it.
func (h *rangeHead) withHeadChunk(meta chunks.Meta, f func(*memChunk)) bool {
	s := h.th.getByRef(uint64(meta.Ref &^ (lazyChunkRef | lazyPartRef | lazyHeadRef)))
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.chunks {
		if c.minT == meta.MinTime && c.part == 0 {
			f(c)
			return true
		}
	}
	return false
}

// storedChunk returns the series reference, encoding, newest sample time
// and bytes in Pebble of the chunk of a lazyRef or lazyHeadRef meta. The
// caller holds iterMu; the bytes are valid until it lets go of it.
func (h *rangeHead) storedChunk(meta chunks.Meta) (sref uint64, enc chunkenc.Encoding, maxT int64, data []byte, err error) {
	sref, part := uint64(meta.Ref&^(lazyChunkRef|lazyPartRef|lazyHeadRef)), uint64(0)
	if meta.Ref&lazyPartRef != 0 {
		h.mu.Lock()
		i := int(sref)
		if i >= len(h.lazyParts) {
			h.mu.Unlock()
			return sref, 0, 0, nil, fmt.Errorf("chunk reference %x: %w", uint64(meta.Ref), storage.ErrNotFound)
		}
		sref, part = h.lazyParts[i].sref, h.lazyParts[i].part
		h.mu.Unlock()
	}
	it, err := h.dayIter(dayOf(meta.MinTime))
	if err != nil {
		return sref, 0, 0, nil, err
	}
	if enc, data, ok := h.last.get(sref, meta.MinTime, part); ok {
		return sref, enc, meta.MaxTime, data, nil
	}
	h.keyBuf = appendChunkKey(h.keyBuf[:0], h.th.id, sref, meta.MinTime, part)
	key := h.keyBuf
	// An engine iterates series in the order Series read them, so the
	// chunk wanted is most often the key after the last one read.
	if !it.seekGE(key) || !bytes.Equal(it.Key(), key) {
		if err := it.Error(); err != nil {
			return sref, 0, 0, nil, fmt.Errorf("read chunk: %w", err)
		}
		return sref, 0, 0, nil, fmt.Errorf("series %d chunk at %d: %w", sref, meta.MinTime, storage.ErrNotFound)
	}
	enc, maxT, data, err = decodeChunkValue(it.Value(), meta.MinTime)
	if err != nil {
		return sref, 0, 0, nil, fmt.Errorf("series %d: %w", sref, err)
	}
	return sref, enc, maxT, data, nil
}

// lastBufs are the buffers of readers' lastSeries, reused from query to
// query: grown anew by each, they were a tenth of what a range query of
// one series allocated. Nothing refers to them once the reader is closed
// (their bytes are read under iterMu, which close takes).
var lastBufs sync.Pool // of *lastSeries

// maxPooledLast bounds the bytes of a pooled lastSeries.
const maxPooledLast = 256 << 10

// lastSeries holds the chunk bytes of one series as Series read them.
type lastSeries struct {
	sref   uint64
	chunks []lastChunk
	buf    []byte
}

type lastChunk struct {
	minT     int64
	part     uint64
	enc      chunkenc.Encoding
	off, end int
}

func (l *lastSeries) reset() {
	l.sref, l.chunks, l.buf = 0, l.chunks[:0], l.buf[:0]
}

func (l *lastSeries) add(sref uint64, minT int64, part uint64, enc chunkenc.Encoding, data []byte) {
	l.sref = sref
	off := len(l.buf)
	l.buf = append(l.buf, data...)
	l.chunks = append(l.chunks, lastChunk{minT: minT, part: part, enc: enc, off: off, end: len(l.buf)})
}

// get returns the bytes of a chunk of the last series, valid until the
// next Series that reads Pebble.
func (l *lastSeries) get(sref uint64, minT int64, part uint64) (chunkenc.Encoding, []byte, bool) {
	if l.sref != sref || len(l.chunks) == 0 {
		return 0, nil, false
	}
	for _, c := range l.chunks {
		if c.minT == minT && c.part == part {
			return c.enc, l.buf[c.off:c.end], true
		}
	}
	return 0, nil, false
}

// capped returns chk, or an iterable of its samples up to maxT if it has
// later ones (its newest is at chkMaxT).
func capped(chk chunkenc.Chunk, chkMaxT, maxT int64) (chunkenc.Chunk, chunkenc.Iterable, error) {
	if chkMaxT <= maxT {
		return chk, nil, nil
	}
	return nil, cappedIterable{chk, maxT}, nil
}

// cappedIterable iterates a chunk's samples up to maxT.
type cappedIterable struct {
	chk  chunkenc.Chunk
	maxT int64
}

func (c cappedIterable) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	ci, ok := it.(*cappedIterator)
	if !ok {
		ci = &cappedIterator{}
	}
	ci.Iterator = c.chk.Iterator(ci.Iterator)
	ci.maxT, ci.done = c.maxT, false
	return ci
}

type cappedIterator struct {
	chunkenc.Iterator
	maxT int64
	done bool
}

func (c *cappedIterator) Next() chunkenc.ValueType {
	if c.done {
		return chunkenc.ValNone
	}
	return c.check(c.Iterator.Next())
}

func (c *cappedIterator) Seek(t int64) chunkenc.ValueType {
	if c.done {
		return chunkenc.ValNone
	}
	return c.check(c.Iterator.Seek(t))
}

func (c *cappedIterator) check(vt chunkenc.ValueType) chunkenc.ValueType {
	if vt != chunkenc.ValNone && c.Iterator.AtT() > c.maxT {
		c.done = true
		return chunkenc.ValNone
	}
	return vt
}

// rangeChunks implements tsdb.ChunkReader: chunk data is in the metas,
// read from Pebble (lazyRef) or merged (groupOverlaps).
type rangeChunks rangeHead

func (r *rangeChunks) Close() error { return nil }

func (r *rangeChunks) ChunkOrIterable(meta chunks.Meta) (chunkenc.Chunk, chunkenc.Iterable, error) {
	if meta.Chunk != nil {
		return meta.Chunk, nil, nil
	}
	h := (*rangeHead)(r)
	if meta.Ref&lazyChunkRef != 0 {
		return h.readLazy(meta, false)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	i := int(meta.Ref) - 1
	if i < 0 || i >= len(h.merged) {
		return nil, nil, fmt.Errorf("chunk reference %d: %w", meta.Ref, storage.ErrNotFound)
	}
	return nil, mergedIterable(h.merged[i]), nil
}

// mergedIterable iterates overlapping chunks as one, in time order; of
// samples with the same timestamp it keeps one.
type mergedIterable []chunkenc.Iterable

func (m mergedIterable) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	its := make([]chunkenc.Iterator, len(m))
	for i, c := range m {
		its[i] = c.Iterator(nil)
	}
	return storage.ChainSampleIteratorFromIterators(it, its)
}

// labelValuesWithMatchers is Prometheus' function of that name
// (tsdb/querier.go), which tsdb does not export.
func labelValuesWithMatchers(ctx context.Context, r tsdb.IndexReader, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, error) {
	allValues, err := r.LabelValues(ctx, name, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching values of label %s: %w", name, err)
	}
	hasMatchersForOtherLabels := false
	for _, m := range matchers {
		if m.Name != name {
			hasMatchersForOtherLabels = true
			continue
		}
		filtered := allValues[:0]
		for i, v := range allValues {
			if i%100 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if m.Matches(v) {
				filtered = append(filtered, v)
			}
		}
		allValues = filtered
	}
	if len(allValues) == 0 {
		return nil, nil
	}
	if !hasMatchersForOtherLabels {
		allValues, _ = hints.ApplyLimit(allValues)
		return allValues, nil
	}
	p, err := tsdb.PostingsForMatchers(ctx, r, matchers...)
	if err != nil {
		return nil, fmt.Errorf("fetching postings for matchers: %w", err)
	}
	valuesPostings := make([]index.Postings, len(allValues))
	for i, value := range allValues {
		valuesPostings[i], err = r.Postings(ctx, name, value)
		if err != nil {
			return nil, fmt.Errorf("fetching postings for %s=%q: %w", name, value, err)
		}
	}
	indexes, err := index.FindIntersectingPostings(p, valuesPostings)
	if err != nil {
		return nil, fmt.Errorf("intersecting postings: %w", err)
	}
	earlyLimit := hints.AllowsEarlyStop()
	values := make([]string, 0, len(indexes))
	for _, idx := range indexes {
		values = append(values, allValues[idx])
		if earlyLimit && len(values) >= hints.Limit {
			break
		}
	}
	values, _ = hints.ApplyLimit(values)
	return values, nil
}
