package eventstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// BenchmarkAppend measures Store.Append (synced) with concurrent callers,
// without a transport, on the real disk of b.TempDir().
func BenchmarkAppend(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			db := storagetest.Open(b, b.TempDir())
			defer db.Close()
			s := New(eventsNS(b, db), Options{})
			now := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for w := 0; w < clients; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						e := events.Event{Name: "deploy", State: events.StateStart, Time: now,
							Attributes: map[string]string{"service": "api", "worker": fmt.Sprint(w), "i": fmt.Sprint(i)}}
						if _, err := s.Append(context.Background(), 1, []events.Event{e}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
