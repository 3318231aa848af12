package storage

import (
	"context"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/index"
	"github.com/prometheus/prometheus/util/annotations"
)

// selectSeriesOnly is a select with the "series" hint (the series API):
// the series with a chunk in the range, read from Prometheus' postings as
// its block querier reads them, without their samples. Prometheus' block
// querier gives these series (a chunk overlapping both the querier's range
// and the hint's) with empty chunks; through rangeIndex.Series it would
// read every chunk of every series from Pebble only to find one.
// hasChunk asks memory first and reads no chunk data.
func (h *rangeHead) selectSeriesOnly(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	ix := (*rangeIndex)(h)
	p, err := tsdb.PostingsForMatchers(ctx, ix, ms...)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if hints.ShardCount > 0 {
		p = ix.ShardedPostings(p, hints.ShardIndex, hints.ShardCount)
	}
	if sortSeries {
		p = ix.SortedPostings(p)
	}
	return &seriesOnlySet{ctx: ctx, h: h, p: p, mint: hints.Start, maxt: hints.End}
}

type seriesOnlySet struct {
	ctx        context.Context
	h          *rangeHead
	p          index.Postings
	mint, maxt int64
	cur        labels.Labels
	sb         labels.ScratchBuilder
	n          int
	err        error
}

func (s *seriesOnlySet) Next() bool {
	if s.err != nil {
		return false
	}
	for s.p.Next() {
		if s.n++; s.n%128 == 0 {
			if err := s.ctx.Err(); err != nil {
				s.err = err
				return false
			}
		}
		ms := s.h.th.getByIdx(uint64(s.p.At()))
		if ms == nil {
			continue // removed by retention since the postings were read
		}
		ok, err := s.h.hasChunk(ms, s.mint, s.maxt)
		if err != nil {
			s.err = err
			return false
		}
		if ok {
			s.cur = s.h.th.symbols.labels(ms.syms, &s.sb)
			return true
		}
	}
	if err := s.p.Err(); err != nil {
		s.err = fmt.Errorf("expand postings: %w", err)
	}
	return false
}

func (s *seriesOnlySet) At() storage.Series                { return seriesOnly{s.cur} }
func (s *seriesOnlySet) Err() error                        { return s.err }
func (s *seriesOnlySet) Warnings() annotations.Annotations { return nil }

// seriesOnly is a series without samples, as a "series" select gives it.
type seriesOnly struct{ lset labels.Labels }

func (s seriesOnly) Labels() labels.Labels { return s.lset }
func (s seriesOnly) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return chunkenc.NewNopIterator()
}

// hasChunk reports whether the series has a chunk that overlaps both the
// reader's range and [mint, maxt]: one of the chunks rangeIndex.Series
// would give that Prometheus' block querier keeps for a "series" select
// (a group of overlapping chunks covers what its members cover, so one
// member overlapping is the group overlapping).
func (h *rangeHead) hasChunk(s *memSeries, mint, maxt int64) (bool, error) {
	in := func(minT, maxT int64) bool {
		return maxT >= h.mint && minT <= h.maxt && maxT >= mint && minT <= maxt
	}
	s.mu.Lock()
	for c := range s.allChunks() {
		if in(c.minT, c.maxT) && c.chunk.NumSamples() > 0 {
			s.mu.Unlock()
			return true, nil
		}
	}
	if ooo := s.oooSamples(); len(ooo) > 0 {
		// As Series builds them.
		var buf []sample
		for _, smp := range ooo {
			if smp.t >= h.mint && smp.t <= h.maxt {
				buf = append(buf, smp)
			}
		}
		for _, c := range buildChunks(buf, 0) {
			if in(c.minT, c.maxT) {
				s.mu.Unlock()
				return true, nil
			}
		}
	}
	firstDay, lastDay := s.firstDay, s.lastDay
	covered := s.memoryCovers(h.mint)
	s.mu.Unlock()
	if covered {
		return false, nil
	}
	// The chunks in Pebble, as Series finds them (a chunk does not cross
	// an aligned chunkRange), from the later of the two range starts.
	lower, upper := max(h.mint, mint), min(h.maxt, maxt)
	if lower > upper {
		// Prometheus keeps a chunk that overlaps both ranges even when
		// they do not overlap each other; rare enough to read as Series.
		lower, upper = h.mint, h.maxt
	}
	from, to := max(dayOf(lower), firstDay), min(dayOf(upper), lastDay)
	if from > to {
		return false, nil
	}
	h.iterMu.Lock()
	defer h.iterMu.Unlock()
	for day := from; day <= to; day++ {
		it, err := h.dayIter(day)
		if err != nil {
			return false, err
		}
		lo := max(alignDown(lower, chunkRange), int64(day)*dayMillis)
		if lower == math.MinInt64 {
			lo = int64(day) * dayMillis
		}
		prefix := chunkSeriesPrefix(h.th.id, day, s.ref)
		for it.seekGE(chunkKey(h.th.id, s.ref, lo, 0)); it.Valid(); it.next() {
			k := it.Key()
			if !hasPrefix(k, prefix) {
				break
			}
			kp, err := parseChunkKey(k)
			if err != nil {
				return false, err
			}
			if kp.minT > upper {
				break
			}
			_, maxT, _, err := decodeChunkValue(it.Value(), kp.minT)
			if err != nil {
				return false, fmt.Errorf("series %d: %w", s.ref, err)
			}
			if in(kp.minT, maxT) {
				return true, nil
			}
		}
		if err := it.Error(); err != nil {
			return false, fmt.Errorf("read chunks: %w", err)
		}
	}
	return false, nil
}
