package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
)

// TestConcurrentAppendsReadsAndCheckpoints runs writers, readers and
// checkpoints at once. Every read must hold every sample acknowledged
// before it started, and nothing that was never appended; values must be
// the ones written.
func TestConcurrentAppendsReadsAndCheckpoints(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), SamplesPerChunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	const writers, seriesPerWriter, rounds = 4, 3, 150
	var (
		mu        sync.Mutex
		acked     = map[string]map[int64]float64{} // acknowledged by Commit
		attempted = map[string]map[int64]float64{} // handed to Append
	)
	value := func(ls string, t int64) float64 { return float64(len(ls)) + float64(t%977) }

	// One clock for all writers: the out-of-order window counts back from
	// the tenant's newest sample.
	var clock atomic.Int64
	clock.Store(1_700_000_000_000)
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 16)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var lsets []labels.Labels
			for i := 0; i < seriesPerWriter; i++ {
				lsets = append(lsets, labels.FromStrings("__name__", "m", "w", fmt.Sprint(w), "i", fmt.Sprint(i)))
			}
			for r := 0; r < rounds; r++ {
				step := int64(15_000)
				if rng.IntN(40) == 0 {
					step += chunkRange // cross a chunk range now and then
				}
				now := clock.Add(step)
				app := db.AppenderV2(ctx)
				var added []struct {
					ls string
					t  int64
				}
				mu.Lock()
				for _, ls := range lsets {
					ts := now
					if rng.IntN(8) == 0 {
						ts = now - 1 - rng.Int64N(5*60_000) // out of order, within the window
					}
					if _, ok := attempted[ls.String()][ts]; ok {
						continue
					}
					_, err := app.Append(0, ls, 0, ts, value(ls.String(), ts), nil, nil, promstorage.AOptions{})
					if errors.Is(err, promstorage.ErrTooOldSample) || errors.Is(err, promstorage.ErrOutOfOrderSample) {
						continue // another writer moved the clock on: rightly refused
					}
					if err != nil {
						mu.Unlock()
						errc <- fmt.Errorf("append %s at %d: %w", ls, ts, err)
						return
					}
					if attempted[ls.String()] == nil {
						attempted[ls.String()] = map[int64]float64{}
					}
					attempted[ls.String()][ts] = value(ls.String(), ts)
					added = append(added, struct {
						ls string
						t  int64
					}{ls.String(), ts})
				}
				mu.Unlock()
				if err := app.Commit(); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				for _, a := range added {
					if acked[a.ls] == nil {
						acked[a.ls] = map[int64]float64{}
					}
					acked[a.ls][a.t] = value(a.ls, a.t)
				}
				mu.Unlock()
			}
		}()
	}
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // checkpoints and reclamation
		defer bg.Done()
		for {
			// Each checkpoint leaves a range deletion in the memtable, which
			// every new iterator fragments: a pause keeps them to hundreds.
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if err := db.checkpoint(ctx); err != nil {
				errc <- err
				return
			}
			db.reclaim()
		}
	}()
	for r := 0; r < 2; r++ {
		bg.Add(1)
		go func() { // readers
			defer bg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				mu.Lock()
				want := map[string]map[int64]float64{}
				for ls, m := range acked {
					want[ls] = map[int64]float64{}
					for t, v := range m {
						want[ls][t] = v
					}
				}
				mu.Unlock()
				q, err := db.Querier(math.MinInt64, math.MaxInt64)
				if err != nil {
					errc <- err
					return
				}
				got := collect(t, q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")))
				_ = q.Close()
				mu.Lock()
				for ls, pts := range got {
					for _, p := range pts {
						if v, ok := attempted[ls][p.t]; !ok || math.Float64bits(v) != math.Float64bits(p.v) {
							mu.Unlock()
							errc <- fmt.Errorf("%s: read %v at %d, never appended", ls, p.v, p.t)
							return
						}
						delete(want[ls], p.t)
					}
				}
				mu.Unlock()
				for ls, m := range want {
					if len(m) > 0 {
						errc <- fmt.Errorf("%s: %d acknowledged samples missing from a read", ls, len(m))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	bg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	m := &modelStore{t: t, db: db}
	for w := 0; w < writers; w++ {
		for i := 0; i < seriesPerWriter; i++ {
			ls := labels.FromStrings("__name__", "m", "w", fmt.Sprint(w), "i", fmt.Sprint(i))
			m.series = append(m.series, ls)
			m.data = append(m.data, acked[ls.String()])
		}
	}
	m.check(math.MinInt64, math.MaxInt64, "after the run")
}
