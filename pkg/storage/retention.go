package storage

import (
	"context"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// applyRetention deletes, for each tenant, the partitions that lie entirely
// before its newest sample minus the retention, with range deletions, and
// forgets the series that have no sample left. Live partitions are not
// touched.
func (db *DB) applyRetention(ctx context.Context) error {
	retention := db.opts.Retention.Milliseconds()
	for _, th := range db.tenantHeads() {
		if err := ctx.Err(); err != nil {
			return err
		}
		maxT := th.maxT.Load()
		if maxT == math.MinInt64 {
			continue
		}
		dayCut := dayOf(maxT - retention)
		cutT := int64(dayCut) * dayMillis
		b := db.pdb.NewBatch()
		if err := b.DeleteRange(chunkDayPrefix(th.id, math.MinInt32), chunkDayPrefix(th.id, dayCut), nil); err != nil {
			_ = b.Close()
			return fmt.Errorf("delete expired chunks: %w", err)
		}
		if err := b.DeleteRange(exemplarDayPrefix(th.id, math.MinInt32), exemplarDayPrefix(th.id, dayCut), nil); err != nil {
			_ = b.Close()
			return fmt.Errorf("delete expired exemplars: %w", err)
		}
		var gone []*memSeries
		// Memory drops what is before cutT from here on, whether the
		// deletion commits or not.
		defer db.changed(th, math.MinInt64, cutT-1)
		for _, s := range th.seriesSnapshot() {
			s.mu.Lock()
			s.chunks = dropBefore(s.chunks, cutT, &s.storedMaxT)
			if r := s.rare; r != nil {
				r.oooChunks = dropBefore(r.oooChunks, cutT, &s.storedMaxT)
				for len(r.ooo) > 0 && r.ooo[0].t < cutT {
					r.ooo = r.ooo[1:]
				}
				s.tidyRare()
			}
			expired := s.flags.has(flagDurable) && s.lastDay < dayCut && len(s.chunks) == 0 && len(s.oooSamples()) == 0 && len(s.oooChunkList()) == 0
			if expired {
				s.flags.set(flagDeleted, true)
			}
			s.mu.Unlock()
			if expired {
				gone = append(gone, s)
				if err := b.Delete(seriesKey(th.id, s.ref), nil); err != nil {
					_ = b.Close()
					return fmt.Errorf("delete expired series: %w", err)
				}
			}
		}
		err := b.Commit(pebble.Sync)
		db.iters.invalidate() // a pooled iterator would still see the expired chunks
		if err != nil {
			_ = b.Close()
			return fmt.Errorf("commit retention: %w", err)
		}
		_ = b.Close()
		th.remove(gone)
		if th.symbols.hasQueued() {
			// Readers and holders from these epochs on cannot find the
			// removed series; reclaim frees their symbols once the
			// earlier ones have finished.
			th.symbols.seal(db.readers.advance(), db.holders.advance())
		}
		db.changed(th, math.MinInt64, cutT-1)
		if th.minT.Load() < cutT {
			th.minT.Store(cutT)
		}
		if len(gone) > 0 {
			db.logger.Info("retention removed series", "tenant", th.name, "series", len(gone), "before", cutT)
		}
		if db.metrics != nil {
			db.metrics.seriesRemoved.Add(float64(len(gone)))
		}
	}
	return nil
}

// dropBefore drops chunks that end before t, raising *storedMaxT to the
// newest sample dropped. An open chunk dropped this way is replaced by a new
// one on the series' next append.
func dropBefore(cs []*memChunk, t int64, storedMaxT *int64) []*memChunk {
	keep := cs[:0]
	for _, c := range cs {
		if c.maxT < t && c.chunk.NumSamples() > 0 {
			*storedMaxT = max(*storedMaxT, c.maxT)
			continue
		}
		keep = append(keep, c)
	}
	clear(cs[len(keep):])
	return keep
}
