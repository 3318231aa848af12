package storage

import (
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// ExemplarQuerier returns a querier over the exemplars of the tenant in ctx.
func (db *DB) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return &exemplarQuerier{db: db, ctx: ctx, th: db.tenantFor(ctx)}, nil
}

type exemplarQuerier struct {
	db  *DB
	ctx context.Context
	th  *tenantHead
}

// Select returns the exemplars in [start, end] of the series matching any of
// the matcher sets, per series in label order, as Prometheus' exemplar
// storage does.
func (q *exemplarQuerier) Select(start, end int64, matcherSets ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	if q.th == nil {
		return []exemplar.QueryResult{}, nil
	}
	// A reader: retention may remove the series it lists.
	epoch := q.db.readers.acquire()
	defer q.db.readers.release(epoch)
	seen := map[uint64]struct{}{}
	var series []*memSeries
	ix := (*rangeIndex)(&rangeHead{th: q.th})
	for _, ms := range matcherSets {
		p, err := tsdb.PostingsForMatchers(q.ctx, ix, ms...)
		if err != nil {
			return nil, fmt.Errorf("select exemplar series: %w", err)
		}
		for p.Next() {
			ref := uint64(p.At())
			if _, ok := seen[ref]; ok {
				continue
			}
			seen[ref] = struct{}{}
			if s := q.th.getByIdx(ref); s != nil {
				series = append(series, s)
			}
		}
		if err := p.Err(); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(series, func(a, b *memSeries) int { return q.th.symbols.compare(a.syms, b.syms) })

	var out []exemplar.QueryResult
	var sb labels.ScratchBuilder
	for i, s := range series {
		if i%100 == 0 && q.ctx.Err() != nil {
			return nil, q.ctx.Err()
		}
		var es []exemplar.Exemplar
		s.mu.Lock()
		from, to := max(dayOf(start), s.firstDay), min(dayOf(end), s.lastDay)
		s.mu.Unlock()
		for day := from; day <= to; day++ {
			p := exemplarSeriesPrefix(q.th.id, day, s.ref)
			it, err := q.db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)})
			if err != nil {
				return nil, fmt.Errorf("read exemplars: %w", err)
			}
			for it.SeekGE(exemplarKey(q.th.id, s.ref, start)); it.Valid(); it.Next() {
				k := it.Key()
				if len(k) != exemplarKeyLen {
					_ = it.Close()
					return nil, fmt.Errorf("exemplar key of %d bytes: %w", len(k), errCorruptKey)
				}
				t := getInt64(k[exemplarKeyLen-8:])
				if t > end {
					break
				}
				e, err := decodeExemplar(it.Value(), t, &sb)
				if err != nil {
					_ = it.Close()
					return nil, fmt.Errorf("series %d exemplar at %d: %w", s.ref, t, err)
				}
				es = append(es, e)
			}
			err = it.Error()
			_ = it.Close()
			if err != nil {
				return nil, fmt.Errorf("read exemplars: %w", err)
			}
		}
		if len(es) > 0 {
			out = append(out, exemplar.QueryResult{SeriesLabels: q.th.seriesLabels(s), Exemplars: es})
		}
	}
	if out == nil {
		out = []exemplar.QueryResult{}
	}
	return out, nil
}
