package storage

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/index"
)

// Stats returns the cardinality statistics of the tenant in ctx, in the
// shape of Prometheus' head statistics, for /api/v1/status/tsdb.
func (db *DB) Stats(ctx context.Context, statsByLabelName string, limit int) (*tsdb.Stats, error) {
	th := db.tenantFor(ctx)
	if th == nil {
		return &tsdb.Stats{MinTime: math.MaxInt64, MaxTime: math.MinInt64, IndexPostingStats: &index.PostingsStats{}}, nil
	}
	ps := th.postings.Stats(statsByLabelName, limit, labels.SizeOfLabels)
	// Prometheus orders by count only, leaving ties in map order; order
	// ties by name so that the answer does not change between calls.
	for _, list := range [][]index.Stat{ps.CardinalityMetricsStats, ps.CardinalityLabelStats, ps.LabelValueStats, ps.LabelValuePairsStats} {
		slices.SortStableFunc(list, func(a, b index.Stat) int {
			if a.Count != b.Count {
				return cmp.Compare(b.Count, a.Count)
			}
			return strings.Compare(a.Name, b.Name)
		})
	}
	return &tsdb.Stats{
		NumSeries:         uint64(th.numSeries()),
		MinTime:           th.minT.Load(),
		MaxTime:           th.maxT.Load(),
		IndexPostingStats: ps,
	}, ctx.Err()
}

// Flush writes every in-memory chunk to Pebble, drops what readers no
// longer need from memory, and compacts the whole key space, so that the
// data directory holds only compressed chunks and indexes.
func (db *DB) Flush(ctx context.Context) error {
	if err := db.checkUsable(); err != nil {
		return err
	}
	// A flush held up by the disk returns its fault, and finishes in the
	// background once the disk takes writes again.
	return db.runHeld(func() error { return db.flush(ctx) })
}

func (db *DB) flush(ctx context.Context) error {
	if err := db.checkpoint(ctx); err != nil {
		return err
	}
	db.reclaim()
	if err := db.pdb.Flush(); err != nil {
		return err
	}
	if err := db.pdb.Compact(ctx, []byte{0}, []byte{0xff, 0xff, 0xff, 0xff, 0xff}, true); err != nil {
		return err
	}
	// Pebble deletes the files a compaction made obsolete in the
	// background; wait for it so that the directory shows what is live.
	for i := 0; i < 100; i++ {
		m := db.pdb.Metrics()
		if m.Table.ObsoleteCount == 0 && m.Table.ZombieCount == 0 && m.WAL.ObsoleteFiles == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// SeriesCount returns the number of series of the tenant in ctx, cheaply
// (for limits).
func (db *DB) SeriesCount(ctx context.Context) int {
	th := db.tenantFor(ctx)
	if th == nil {
		return 0
	}
	return th.numSeries()
}
