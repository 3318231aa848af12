package storage

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/index"
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
	for _, m := range ms {
		key.WriteString(m.String())
		key.WriteByte(0)
	}
	if sharded {
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
			p = &shardedPostings{Postings: p, th: tq.rh.th, keep: func(s *memSeries) bool { return spec.Contains(s.lset) }}
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
	bq, err := tsdb.NewBlockQuerier(rh, q.mint, q.maxt)
	if err != nil {
		rh.close()
		return storage.ErrSeriesSet(err)
	}
	q.mu.Lock()
	q.partReaders = append(q.partReaders, &tenantQuerier{rh: rh, q: bq})
	q.mu.Unlock()
	var h *storage.SelectHints
	if hints != nil {
		c := *hints
		c.ShardIndex, c.ShardCount = 0, 0 // applied to the list
		h = &c
	}
	return q.floatSet(bq.Select(ctx, false, h, labels.MustNewMatcher(labels.MatchEqual, partLabel, "part")), rh, h)
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
