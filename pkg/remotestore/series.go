package remotestore

import (
	"fmt"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/levitated/levitated/api/proto/thanos/storepb"
)

// collector gathers the series of one Series call: frames of one series
// (a large series is split over several) are joined, and the whole is held
// within maxBytes.
type collector struct {
	mint, maxt int64
	maxBytes   int64
	flag       string
	skipChunks bool

	bytes  int64
	out    []*series
	sorted bool
	b      labels.ScratchBuilder
}

func (c *collector) add(s *storepb.Series) error {
	if s == nil {
		return nil
	}
	c.b.Reset()
	for _, l := range s.GetLabels() {
		c.b.Add(l.GetName(), l.GetValue())
		c.bytes += int64(len(l.GetName()) + len(l.GetValue()))
	}
	c.b.Sort()
	lset := c.b.Labels()
	var cur *series
	if n := len(c.out); n > 0 {
		switch cmp := labels.Compare(c.out[n-1].lset, lset); {
		case cmp == 0:
			cur = c.out[n-1]
		case cmp > 0:
			c.sorted = false
		}
	} else {
		c.sorted = true
	}
	if cur == nil {
		cur = &series{lset: lset, mint: c.mint, maxt: c.maxt}
		c.out = append(c.out, cur)
	}
	for _, ac := range s.GetChunks() {
		raw := ac.GetRaw()
		if raw == nil {
			return fmt.Errorf("series %s: a chunk has no raw data (only downsampled aggregates)", lset)
		}
		var enc chunkenc.Encoding
		switch raw.GetType() {
		case storepb.Chunk_XOR:
			enc = chunkenc.EncXOR
		case storepb.Chunk_HISTOGRAM:
			enc = chunkenc.EncHistogram
		case storepb.Chunk_FLOAT_HISTOGRAM:
			enc = chunkenc.EncFloatHistogram
		default:
			return fmt.Errorf("series %s: unknown chunk encoding %d", lset, raw.GetType())
		}
		chk, err := chunkenc.FromData(enc, raw.GetData())
		if err != nil {
			return fmt.Errorf("series %s: %w", lset, err)
		}
		c.bytes += int64(len(raw.GetData()))
		cur.chunks = append(cur.chunks, chk)
	}
	if c.maxBytes > 0 && c.bytes > c.maxBytes {
		return fmt.Errorf("the answer is over %d bytes (%s)", c.maxBytes, c.flag)
	}
	return nil
}

// result returns the series sorted by labels, those of one shard when
// shardCount > 0 (by Prometheus' labels.StableHash, as levitated's store and
// event store shard).
func (c *collector) result(shardCount, shardIndex uint64) []*series {
	out := c.out
	if !c.sorted {
		slices.SortStableFunc(out, func(a, b *series) int { return labels.Compare(a.lset, b.lset) })
		joined := out[:0]
		for _, s := range out {
			if n := len(joined); n > 0 && labels.Equal(joined[n-1].lset, s.lset) {
				joined[n-1].chunks = append(joined[n-1].chunks, s.chunks...)
				continue
			}
			joined = append(joined, s)
		}
		out = joined
	}
	if shardCount > 0 {
		out = slices.DeleteFunc(out, func(s *series) bool { return labels.StableHash(s.lset)%shardCount != shardIndex })
	}
	return out
}

// series is a remote series: its chunks, read within [mint, maxt].
type series struct {
	lset       labels.Labels
	chunks     []chunkenc.Chunk
	mint, maxt int64
}

func (s *series) Labels() labels.Labels { return s.lset }

// Iterator reads the chunks in time order. Chunks may overlap (a Querier
// merging the replicas of an HA pair sends both): identical timestamps are
// read once, as Prometheus' chained series merge does.
func (s *series) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	var it chunkenc.Iterator
	switch len(s.chunks) {
	case 0:
		return chunkenc.NewNopIterator()
	case 1:
		it = s.chunks[0].Iterator(nil)
	default:
		its := make([]chunkenc.Iterator, len(s.chunks))
		for i, c := range s.chunks {
			its[i] = c.Iterator(nil)
		}
		it = promstorage.ChainSampleIteratorFromIterators(nil, its)
	}
	return &trimmed{Iterator: it, mint: s.mint, maxt: s.maxt}
}

// trimmed reads only the samples in [mint, maxt], as Prometheus' TSDB
// querier does: a chunk may start before the select and end after it.
type trimmed struct {
	chunkenc.Iterator
	mint, maxt int64
	done       bool
}

func (t *trimmed) Next() chunkenc.ValueType {
	if t.done {
		return chunkenc.ValNone
	}
	for {
		vt := t.Iterator.Next()
		if vt == chunkenc.ValNone {
			t.done = true
			return vt
		}
		ts := t.Iterator.AtT()
		if ts < t.mint {
			continue
		}
		if ts > t.maxt {
			t.done = true
			return chunkenc.ValNone
		}
		return vt
	}
}

func (t *trimmed) Seek(ts int64) chunkenc.ValueType {
	if t.done {
		return chunkenc.ValNone
	}
	vt := t.Iterator.Seek(max(ts, t.mint))
	if vt == chunkenc.ValNone {
		t.done = true
		return vt
	}
	if t.Iterator.AtT() > t.maxt {
		t.done = true
		return chunkenc.ValNone
	}
	return vt
}

var (
	_ chunkenc.Iterator     = (*trimmed)(nil)
	_ promstorage.Series    = (*series)(nil)
	_ promstorage.SeriesSet = (*fetch)(nil)
)

// fetch is the series set of one endpoint's Series call running in the
// background. It never fails but when the caller's context ends: the
// endpoint's failure is one of its warnings.
type fetch struct {
	done   chan struct{}
	series []*series
	warns  annotations.Annotations
	err    error
	i      int
	waited bool
}

func (f *fetch) wait() {
	if f.waited {
		return
	}
	f.waited = true
	// The call runs under f.ctx: it ends when the context does.
	<-f.done
}

func (f *fetch) Next() bool {
	f.wait()
	if f.err != nil || f.i >= len(f.series) {
		return false
	}
	f.i++
	return true
}

func (f *fetch) At() promstorage.Series { return f.series[f.i-1] }

func (f *fetch) Err() error {
	f.wait()
	return f.err
}

func (f *fetch) Warnings() annotations.Annotations {
	f.wait()
	return f.warns
}

// newMergedSet merges the endpoints' sets; a series several endpoints
// answer is merged as Prometheus merges identical series (ChainedSeriesMerge:
// a sample at the same timestamp counted once).
func newMergedSet(sets []*fetch) promstorage.SeriesSet {
	switch len(sets) {
	case 0:
		return promstorage.EmptySeriesSet()
	case 1:
		return sets[0]
	}
	ss := make([]promstorage.SeriesSet, len(sets))
	for i, f := range sets {
		ss[i] = f
	}
	return promstorage.NewMergeSeriesSet(ss, 0, promstorage.ChainedSeriesMerge)
}
