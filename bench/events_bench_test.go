// Package bench holds levitated's benchmarks; see RESULTS.md for figures.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/eventapi"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// eventServer serves the event service as levitated does: gRPC and the REST
// gateway on one h2c listener on 127.0.0.1, over a Pebble DB in b.TempDir()
// (a real disk, so every acknowledged event costs a real fsync, shared by
// concurrent commits).
func eventServer(b *testing.B) (addr string) {
	db := storagetest.Open(b, b.TempDir())
	store := eventstore.New(storagetest.Namespace(b, db, storage.OwnerEvents), eventstore.Options{})
	svc := eventapi.NewEventService(store, tenant.IDFunc(func(context.Context, string) (uint32, error) { return 1, nil }), eventapi.EventServiceOptions{})
	gs := grpc.NewServer()
	levitatedv1.RegisterEventServiceServer(gs, svc)
	gw := runtime.NewServeMux()
	if err := eventapi.RegisterEventGateway(context.Background(), gw, svc); err != nil {
		b.Fatal(err)
	}
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		gw.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: h2c.NewHandler(root, &http2.Server{})}
	go func() { _ = hs.Serve(ln) }()
	b.Cleanup(func() {
		_ = hs.Close()
		gs.Stop()
		_ = db.Close()
	})
	return ln.Addr().String()
}

// parallel runs b.N calls of op spread over n goroutines, each storing
// one event.
func parallel(b *testing.B, n int, op func(worker, i int) error) {
	parallelEvents(b, n, 1, op)
}

// parallelEvents runs b.N calls of op spread over n goroutines, each storing
// perOp events, and reports events/s and the p50 and p99 latency of a call.
func parallelEvents(b *testing.B, n, perOp int, op func(worker, i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	lat := make([][]time.Duration, n)
	b.ResetTimer()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				start := time.Now()
				if err := op(w, int(i)); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	ms := func(q float64) float64 {
		return float64(all[min(len(all)-1, int(q*float64(len(all))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

var clientCounts = []int{1, 16, 64}

// postEvents posts a JSON body to the events API and wants a 200.
func postEvents(hc *http.Client, addr, body string) error {
	resp, err := hc.Post("http://"+addr+"/api/v1/events", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// restBatch is the number of events per request of the batched REST case.
const restBatch = 20

// BenchmarkEventIngest measures durable event ingest (each call returns
// after pebble.Sync) over gRPC and over REST, with 1, 16 and 64 concurrent
// clients, against raw synced Pebble commits of a similar size.
func BenchmarkEventIngest(b *testing.B) {
	now := time.Now()
	for _, clients := range clientCounts {
		b.Run(fmt.Sprintf("transport=grpc,clients=%d", clients), func(b *testing.B) {
			addr := eventServer(b)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := levitatedv1.NewEventServiceClient(conn)
			b.ReportAllocs()
			parallel(b, clients, func(w, i int) error {
				_, err := c.CreateEvent(context.Background(), &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
					Name: "deploy", State: "start", Timestamp: timestamppb.New(now),
					Attributes: map[string]string{"service": "api", "worker": fmt.Sprint(w), "i": fmt.Sprint(i)},
				}})
				return err
			})
		})
		b.Run(fmt.Sprintf("transport=rest,clients=%d", clients), func(b *testing.B) {
			addr := eventServer(b)
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
			defer hc.CloseIdleConnections()
			b.ReportAllocs()
			parallel(b, clients, func(w, i int) error {
				body := fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"api","worker":"%d","i":"%d"}}`, now.UnixMilli(), w, i)
				return postEvents(hc, addr, body)
			})
		})
		// The same, with the events of a CI run batched: {"events":[…]},
		// stored in one synced commit.
		b.Run(fmt.Sprintf("transport=rest-batch%d,clients=%d", restBatch, clients), func(b *testing.B) {
			addr := eventServer(b)
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
			defer hc.CloseIdleConnections()
			b.ReportAllocs()
			parallelEvents(b, clients, restBatch, func(w, i int) error {
				var sb strings.Builder
				sb.WriteString(`{"events":[`)
				for j := 0; j < restBatch; j++ {
					if j > 0 {
						sb.WriteByte(',')
					}
					fmt.Fprintf(&sb, `{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"api","worker":"%d","i":"%d","j":"%d"}}`, now.UnixMilli(), w, i, j)
				}
				sb.WriteString(`]}`)
				return postEvents(hc, addr, sb.String())
			})
		})
		b.Run(fmt.Sprintf("transport=pebble,clients=%d", clients), func(b *testing.B) {
			db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			value := bytes.Repeat([]byte("x"), 200)
			b.ReportAllocs()
			parallel(b, clients, func(w, i int) error {
				batch := db.NewBatch()
				defer batch.Close()
				if err := batch.Set([]byte(fmt.Sprintf("k%08d-%08d", w, i)), value, nil); err != nil {
					return err
				}
				return batch.Commit(pebble.Sync)
			})
		})
	}
}
