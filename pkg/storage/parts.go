package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/util/annotations"
)

// Part asks a select for a run of Size consecutive series of its result:
// those at positions [Index*Size, (Index+1)*Size) of the series the
// unsorted select would return, in that order. Parts of one select can be
// read concurrently, each by a reader of its own, and reading them one
// after the other is reading the select: a reader that needs a result in
// the select's order (a sum over the series in order, with Kahan
// summation) computes parts concurrently and combines them in order.
//
// A select whose context has a part (WithPart) selects it when the store
// serves parts (this store, for an unsorted select other than the series
// API's), and a querier that merges other stores' series into the select
// must decline it (DeclinePart). After the select, Served tells whether
// the set is the part, and Last whether no series follow it; otherwise the
// set is the whole select, which the reader should not read as a part.
type Part struct {
	Index, Size int
	served      atomic.Bool
	declined    atomic.Bool
	last        atomic.Bool
}

type partKey struct{}

// WithPart returns a context whose selects select part p.
func WithPart(ctx context.Context, p *Part) context.Context {
	return context.WithValue(ctx, partKey{}, p)
}

// DeclinePart marks the part of ctx, if any, as not served: a querier
// that merges other stores' series into a select calls it.
func DeclinePart(ctx context.Context) {
	if p, ok := ctx.Value(partKey{}).(*Part); ok {
		p.declined.Store(true)
	}
}

// Served reports whether the select selected the part only.
func (p *Part) Served() bool { return p.served.Load() && !p.declined.Load() }

// Last reports whether no series of the select follow the part.
func (p *Part) Last() bool { return p.last.Load() }

// PartOf returns the part of ctx's selects, if any.
func PartOf(ctx context.Context) (*Part, bool) { return partFrom(ctx) }

func partFrom(ctx context.Context) (*Part, bool) {
	p, ok := ctx.Value(partKey{}).(*Part)
	return p, ok && p.Size > 0 && p.Index >= 0
}

// partLabel names, in the matcher of a part's select, the reader's own
// list of series (rangeIndex.Postings): Prometheus' block querier then
// reads exactly those series, in that order.
const partLabel = "\xff__levitated_part__"

// partList is a select's series, listed once for all its parts.
type partList struct {
	once sync.Once
	refs []storage.SeriesRef
	err  error
}

// selectPart selects a part of the unsorted select of ms: the select's
// postings are listed once per querier (and shard), and the part is read
// by a reader of its own, whose Pebble iterators no other part moves.
func (q *querier) selectPart(ctx context.Context, tq *tenantQuerier, part *Part, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	spec, sharded := shardFrom(ctx)
	var key strings.Builder
	keyLen := 0
	for _, m := range ms {
		keyLen += len(m.Name) + len(m.Value) + 2*binary.MaxVarintLen64 + 1
	}
	key.Grow(keyLen)
	var lenBuf [binary.MaxVarintLen64]byte
	for _, m := range ms {
		// The matcher by its type and its lengths-prefixed name and
		// value: one key per matcher list, without formatting each.
		key.WriteByte(byte(m.Type))
		key.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(m.Name))))
		key.WriteString(m.Name)
		key.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(m.Value))))
		key.WriteString(m.Value)
	}
	if sharded {
		key.WriteByte(0xff) // not a matcher type
		key.WriteString(shardKeyString(spec))
	}
	q.mu.Lock()
	if q.parts == nil {
		q.parts = map[string]*partList{}
	}
	pl := q.parts[key.String()]
	if pl == nil {
		pl = &partList{}
		q.parts[key.String()] = pl
	}
	q.mu.Unlock()
	pl.once.Do(func() {
		ix := (*rangeIndex)(tq.rh)
		p, err := tsdb.PostingsForMatchers(ctx, ix, ms...)
		if err != nil {
			pl.err = err
			return
		}
		if sharded {
			p = &shardedPostings{Postings: p, th: tq.rh.th, keep: func(s *memSeries) bool { return spec.containsInterned(tq.rh.th.symbols, s.syms) }}
		}
		pl.refs, pl.err = index.ExpandPostings(p)
	})
	if pl.err != nil {
		return storage.ErrSeriesSet(pl.err)
	}
	n := len(pl.refs)
	lo, hi := min(part.Index*part.Size, n), min((part.Index+1)*part.Size, n)
	part.last.Store(hi == n)
	part.served.Store(true)
	if lo == hi {
		return storage.EmptySeriesSet()
	}
	rh := q.db.newRangeHead(tq.rh.th, q.mint, q.maxt)
	rh.part = pl.refs[lo:hi:hi]
	q.mu.Lock()
	q.partReaders = append(q.partReaders, &tenantQuerier{rh: rh})
	q.mu.Unlock()
	var h *storage.SelectHints
	if hints != nil {
		c := *hints
		c.ShardIndex, c.ShardCount = 0, 0 // applied to the list
		h = &c
	}
	set := &partSeriesSet{q: q, rh: rh, refs: rh.part, hints: h, mint: q.mint, maxt: q.maxt, direct: true}
	if h != nil {
		set.mint, set.maxt = h.Start, h.End
	}
	return q.floatSet(set, rh, h)
}

// partSeriesSet is the series of a part, listed as Prometheus' block
// querier lists them (blockBaseSeriesSet: series gone or without a chunk
// in [mint, maxt] left out; the store has no tombstones) without the
// copies it makes for each series — its chunk metas, their trimming
// intervals and the series' entry: a part is read by pkg/rollup, which
// reads each series' samples right after Next (floatSeries.AppendFloats,
// from the metas rangeIndex.Series notes). A series iterated instead
// (out-of-order chunks, native histograms, samples with a start timestamp)
// is selected again, alone, through Prometheus' block querier over a
// reader of its own (fallback), as before.
type partSeriesSet struct {
	q          *querier
	rh         *rangeHead
	refs       []storage.SeriesRef
	hints      *storage.SelectHints
	mint, maxt int64

	i       int
	builder labels.ScratchBuilder
	chks    []chunks.Meta
	slab    []partSeries
	slabs   int // slabs made (slabLen)
	cur     *partSeries
	err     error

	fallback *tenantQuerier // the reader of iterated series, once one is

	// direct: Next leaves the series' chunks to AppendFloats
	// (partSeries.appendFloats), which reads them in one pass.
	direct bool
}

// partSeries is a series of a partSeriesSet. Its labels are built when
// Labels is first called (the reader holds the set's reader epoch until
// the querier closes); LabelValue reads one without building them.
type partSeries struct {
	set  *partSeriesSet
	ref  storage.SeriesRef
	ms   *memSeries
	lset labels.Labels // once built
}

func (s *partSeriesSet) Next() bool {
	ix := (*rangeIndex)(s.rh)
	for s.i < len(s.refs) {
		ref := s.refs[s.i]
		s.i++
		ms := s.rh.th.getByIdx(uint64(ref))
		if ms == nil {
			continue
		}
		if s.direct {
			// Its chunks are read by AppendFloats (appendFloats); one
			// without samples in the range has none to give.
			s.next(ref, ms)
			return true
		}
		if err := ix.seriesChunks(ms, labels.EmptyLabels(), &s.chks); err != nil {
			s.err = fmt.Errorf("get series %d: %w", ref, err)
			return false
		}
		in := false
		for _, c := range s.chks {
			if c.MaxTime >= s.mint && c.MinTime <= s.maxt {
				in = true
				break
			}
		}
		if !in {
			continue
		}
		s.next(ref, ms)
		return true
	}
	return false
}

// next makes the series ref, ms the current one.
func (s *partSeriesSet) next(ref storage.SeriesRef, ms *memSeries) {
	if len(s.slab) == 0 {
		s.slab = make([]partSeries, min(slabLen(s.slabs), len(s.refs)-s.i+1))
		s.slabs++
	}
	s.cur = &s.slab[0]
	s.slab = s.slab[1:]
	*s.cur = partSeries{set: s, ref: ref, ms: ms}
}

func (s *partSeriesSet) At() storage.Series                { return s.cur }
func (s *partSeriesSet) Err() error                        { return s.err }
func (s *partSeriesSet) Warnings() annotations.Annotations { return nil }

func (ps *partSeries) Labels() labels.Labels {
	if ps.lset.IsEmpty() {
		ps.lset = ps.set.rh.th.symbols.labels(ps.ms.syms, &ps.set.builder)
	}
	return ps.lset
}

// LabelValue is the value of the series' label name ("" if it has none).
func (ps *partSeries) LabelValue(name string) string {
	if !ps.lset.IsEmpty() {
		return ps.lset.Get(name)
	}
	return ps.set.rh.th.symbols.get(ps.ms.syms, name)
}

// Iterator iterates the series as Prometheus' block querier's series does:
// it is selected again, alone.
func (ps *partSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	s := ps.set
	if s.fallback == nil {
		rh := s.q.db.newRangeHead(s.rh.th, s.q.mint, s.q.maxt)
		bq, err := tsdb.NewBlockQuerier(rh, s.q.mint, s.q.maxt)
		if err != nil {
			rh.close()
			return errIterator{chunkenc.NewNopIterator(), err}
		}
		s.fallback = &tenantQuerier{rh: rh, q: bq}
		s.q.mu.Lock()
		s.q.partReaders = append(s.q.partReaders, s.fallback)
		s.q.mu.Unlock()
	}
	s.fallback.rh.part = []storage.SeriesRef{ps.ref}
	set := s.fallback.q.Select(context.Background(), false, s.hints, labels.MustNewMatcher(labels.MatchEqual, partLabel, "part"))
	if !set.Next() {
		if err := set.Err(); err != nil {
			return errIterator{chunkenc.NewNopIterator(), err}
		}
		return chunkenc.NewNopIterator()
	}
	return set.At().Iterator(it)
}

func shardKeyString(s ShardSpec) string {
	var b strings.Builder
	if s.Without {
		b.WriteString("without ")
	}
	for _, l := range s.Labels {
		b.WriteString(l)
		b.WriteByte(0)
	}
	b.WriteString(strconv.FormatUint(s.Index, 10))
	b.WriteByte('/')
	b.WriteString(strconv.FormatUint(s.Count, 10))
	return b.String()
}

// errIterator is an iterator without samples that ends with err.
type errIterator struct {
	chunkenc.Iterator
	err error
}

func (it errIterator) Err() error { return it.err }
