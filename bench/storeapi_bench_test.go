package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/levitated/levitated/api/proto/thanos/storepb"
	"github.com/levitated/levitated/bench/redgen"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storeapi"
)

// standardQueryable is what the server gives the StoreAPI: the store's
// chunks in the standard encodings (the change-event series left out).
type standardQueryable struct{ db *storage.DB }

func (q standardQueryable) ChunkQuerier(mint, maxt int64) (promstorage.ChunkQuerier, error) {
	cq, err := q.db.ChunkQuerier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return storeapi.StandardChunkQuerier(cq), nil
}

// BenchmarkStoreAPISeries: one StoreAPI Series call over redgen's series
// × 2 h at 15 s (flushed to Pebble, the newest chunks in memory), served
// over loopback gRPC with the external label cluster=bench, streamed to
// the end by a client in the same process: the CPU per sample of the
// whole path (store, re-encoding, framing, gRPC both ends). Series from
// LEVITATED_STOREAPI_SERIES (default 2000). bench/storeapi-bench.sh is the
// comparison with a Thanos sidecar; this is for profiles.
func BenchmarkStoreAPISeries(b *testing.B) {
	n := 2000
	if s := os.Getenv("LEVITATED_STOREAPI_SERIES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	db, err := storage.Open(b.TempDir(), storage.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	series := redgen.Build(n)
	const steps = 2 * 3600 / 15
	end := t0 + steps*scrapeInterval
	for step := int64(0); step < steps; step++ {
		app := db.Appender(ctx)
		for _, s := range series {
			if _, err := app.Append(0, s.Labels, t0+step*scrapeInterval, s.Next(step)); err != nil {
				b.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	o := storeapi.DefaultOptions()
	o.ExternalLabels = labels.FromStrings("cluster", "bench")
	st, err := storeapi.New(standardQueryable{db}, o)
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer()
	st.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	defer g.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := storepb.NewStoreClient(conn)
	call := func() (samples int) {
		stream, err := client.Series(ctx, &storepb.SeriesRequest{
			MinTime: t0, MaxTime: end,
			Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}},
		})
		if err != nil {
			b.Fatal(err)
		}
		for {
			r, err := stream.Recv()
			if err == io.EOF {
				return samples
			}
			if err != nil {
				b.Fatal(err)
			}
			if s := r.GetSeries(); s != nil {
				for _, c := range s.Chunks {
					d := c.Raw.Data
					samples += int(d[0])<<8 | int(d[1])
				}
			}
		}
	}
	want := n * steps
	if got := call(); got != want {
		b.Fatalf("%d samples streamed, want %d", got, want)
	}
	b.ResetTimer()
	for b.Loop() {
		call()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*want), "ns/sample")
}
