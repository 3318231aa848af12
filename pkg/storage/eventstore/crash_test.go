package eventstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// TestCrashKeepsAcknowledgedEvents writes events from several goroutines on
// Pebble's crashable in-memory filesystem, takes crash clones while writes
// are in flight (keeping a random part of the unsynced data), and checks
// that every event acknowledged before the clone is in the reopened store,
// with its window, and that its idempotency key still answers with it.
func TestCrashKeepsAcknowledgedEvents(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			db := storagetest.Open(t, "db", func(o *storage.Options) { o.FS = fs })
			c := &clock{now: t0}
			s := New(eventsNS(t, db), Options{Now: c.Now})
			ctx := context.Background()

			var mu sync.Mutex
			var acked []events.Event
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						e := ev("deploy", events.StateStart, i%3000, "worker", fmt.Sprint(w))
						e.IdempotencyKey = fmt.Sprintf("w%d-%d", w, i)
						out, err := s.Append(ctx, 1, []events.Event{e})
						if err != nil {
							t.Errorf("append: %v", err)
							return
						}
						mu.Lock()
						out[0].Warnings = nil // output only, not stored
						acked = append(acked, out[0])
						mu.Unlock()
					}
				}()
			}
			// Let some appends land, then crash while others are in flight.
			for {
				mu.Lock()
				n := len(acked)
				mu.Unlock()
				if n >= 200 {
					break
				}
			}
			mu.Lock()
			before := append([]events.Event(nil), acked...)
			mu.Unlock()
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, seed))})
			close(stop)
			wg.Wait()
			require.NoError(t, db.Close())

			db2 := storagetest.Open(t, "db", func(o *storage.Options) { o.FS = crashed })
			defer db2.Close()
			s2 := New(eventsNS(t, db2), Options{Now: c.Now})
			for _, want := range before {
				got, err := s2.Get(ctx, 1, want.ID)
				require.NoError(t, err, "acknowledged event %s lost", want.ID)
				require.Equal(t, want, got)
				again, err := s2.Append(ctx, 1, []events.Event{{
					Name: want.Name, State: want.State, Time: want.Time,
					Attributes: want.Attributes, IdempotencyKey: want.IdempotencyKey,
				}})
				require.NoError(t, err)
				require.Equal(t, want.ID, again[0].ID, "idempotency key lost")
			}
		})
	}
}
