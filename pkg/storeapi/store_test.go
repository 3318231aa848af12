package storeapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/levitated/levitated/api/proto/thanos/infopb"
	"github.com/levitated/levitated/api/proto/thanos/labelpb"
	"github.com/levitated/levitated/api/proto/thanos/storepb"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/storeapi"
	"github.com/levitated/levitated/pkg/tenant"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// sample is one float sample of a series.
type sample struct {
	t int64
	v float64
}

// fixture is a real store with a StoreAPI served over loopback gRPC.
type fixture struct {
	db     *storage.DB
	store  *storeapi.Store
	addr   string
	client storepb.StoreClient
	info   infopb.InfoClient
}

func newFixture(t *testing.T, opts storeapi.Options) *fixture {
	t.Helper()
	return serve(t, storagetest.New(t), opts)
}

// serve serves a Store over db on loopback gRPC.
func serve(t *testing.T, db *storage.DB, opts storeapi.Options, sopts ...grpc.ServerOption) *fixture {
	t.Helper()
	st, err := storeapi.New(db, opts)
	require.NoError(t, err)
	g := grpc.NewServer(sopts...)
	st.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(l) }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		g.Stop()
	})
	return &fixture{db: db, store: st, addr: l.Addr().String(), client: storepb.NewStoreClient(conn), info: infopb.NewInfoClient(conn)}
}

func opts(ext ...string) storeapi.Options {
	o := storeapi.DefaultOptions()
	o.ExternalLabels = labels.FromStrings(ext...)
	return o
}

// write appends float samples to one series of the default tenant.
func (f *fixture) write(t *testing.T, lset labels.Labels, samples ...sample) {
	t.Helper()
	app := f.db.Appender(context.Background())
	for _, s := range samples {
		_, err := app.Append(0, lset, s.t, s.v)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
}

func ramp(n int, step int64) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = sample{t: int64(i) * step, v: float64(i)}
	}
	return out
}

// got is one series as received: its labels and decoded samples.
type got struct {
	labels  labels.Labels
	samples []sample
	frames  int
}

// series calls Series and gathers the stream: series (frames of a series
// joined), batches unpacked, warnings.
func (f *fixture) series(t *testing.T, req *storepb.SeriesRequest) ([]got, []string, error) {
	t.Helper()
	stream, err := f.client.Series(context.Background(), req)
	require.NoError(t, err)
	var out []got
	var warnings []string
	add := func(s *storepb.Series) {
		lset := pbLabels(s.Labels)
		if len(out) == 0 || !labels.Equal(out[len(out)-1].labels, lset) {
			out = append(out, got{labels: lset})
		}
		g := &out[len(out)-1]
		g.frames++
		for _, c := range s.Chunks {
			require.Equal(t, storepb.Chunk_XOR, c.Raw.Type)
			chk, err := chunkenc.FromData(chunkenc.EncXOR, c.Raw.Data)
			require.NoError(t, err)
			it := chk.Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				require.True(t, ts >= c.MinTime && ts <= c.MaxTime, "sample %d outside its chunk's [%d, %d]", ts, c.MinTime, c.MaxTime)
				g.samples = append(g.samples, sample{ts, v})
			}
			require.NoError(t, it.Err())
		}
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, warnings, nil
		}
		if err != nil {
			return out, warnings, err
		}
		switch r := resp.Result.(type) {
		case *storepb.SeriesResponse_Series:
			add(r.Series)
		case *storepb.SeriesResponse_Batch:
			for _, s := range r.Batch.Series {
				add(s)
			}
		case *storepb.SeriesResponse_Warning:
			warnings = append(warnings, r.Warning)
		}
	}
}

func pbLabels(ls []*labelpb.Label) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	return b.Labels()
}

func eq(name, value string) *storepb.LabelMatcher {
	return &storepb.LabelMatcher{Type: storepb.LabelMatcher_EQ, Name: name, Value: value}
}

func re(name, value string) *storepb.LabelMatcher {
	return &storepb.LabelMatcher{Type: storepb.LabelMatcher_RE, Name: name, Value: value}
}

func TestSeriesCarriesExternalLabelsAndStoredSamples(t *testing.T) {
	f := newFixture(t, opts("cluster", "eu", "replica", "a"))
	f.write(t, labels.FromStrings("__name__", "up", "job", "api"), ramp(300, 15000)...)
	f.write(t, labels.FromStrings("__name__", "up", "job", "db"), ramp(10, 15000)...)
	f.write(t, labels.FromStrings("__name__", "other"), ramp(10, 15000)...)

	res, warns, err := f.series(t, &storepb.SeriesRequest{MinTime: 0, MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "up")}})
	require.NoError(t, err)
	require.Empty(t, warns)
	require.Len(t, res, 2)
	require.Equal(t, labels.FromStrings("__name__", "up", "cluster", "eu", "job", "api", "replica", "a"), res[0].labels)
	require.Equal(t, labels.FromStrings("__name__", "up", "cluster", "eu", "job", "db", "replica", "a"), res[1].labels)
	require.Equal(t, ramp(300, 15000), res[0].samples, "every stored sample, in stored XOR chunks")
	require.Equal(t, ramp(10, 15000), res[1].samples)

	// A matcher on an external label selects or excludes the whole store.
	res, _, err = f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "up"), eq("cluster", "us")}})
	require.NoError(t, err)
	require.Empty(t, res)
	res, _, err = f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{re("__name__", "up|other"), re("replica", "a|b")}})
	require.NoError(t, err)
	require.Len(t, res, 3)

	// The time range selects chunks; the client trims within them.
	res, _, err = f.series(t, &storepb.SeriesRequest{MinTime: 100 * 15000, MaxTime: 110 * 15000, Matchers: []*storepb.LabelMatcher{eq("job", "api")}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Subset(t, res[0].samples, ramp(300, 15000)[100:111])
}

func TestSeriesWithoutReplicaLabelsSkipChunksAndLimit(t *testing.T) {
	f := newFixture(t, opts("replica", "a", "zone", "z1"))
	for _, job := range []string{"a", "b", "c"} {
		f.write(t, labels.FromStrings("__name__", "up", "job", job), ramp(5, 1000)...)
	}
	res, _, err := f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "up")},
		WithoutReplicaLabels: []string{"replica"}, SkipChunks: true})
	require.NoError(t, err)
	require.Len(t, res, 3)
	for _, r := range res {
		require.False(t, r.labels.Has("replica"))
		require.Equal(t, "z1", r.labels.Get("zone"))
		require.Empty(t, r.samples, "skip_chunks sends labels only")
	}
	res, _, err = f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "up")}, Limit: 2})
	require.NoError(t, err)
	require.Len(t, res, 2)
}

// TestSeriesSortedAsSent: adding an external label can reorder series
// whose labels are a prefix of others' ({__name__="m"} sorts before
// {__name__="m",a="1"}, but with z="x" added after). Thanos merges the
// streams of its stores assuming this order.
func TestSeriesSortedAsSent(t *testing.T) {
	f := newFixture(t, opts("z", "x"))
	f.write(t, labels.FromStrings("__name__", "m"), ramp(3, 1000)...)
	f.write(t, labels.FromStrings("__name__", "m", "a", "1"), ramp(3, 1000)...)
	f.write(t, labels.FromStrings("__name__", "m", "b", "1"), ramp(3, 1000)...)
	f.write(t, labels.FromStrings("__name__", "m", "zz", "1"), ramp(3, 1000)...)
	res, _, err := f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "m")}})
	require.NoError(t, err)
	var sets []string
	for _, r := range res {
		sets = append(sets, r.labels.String())
	}
	require.Equal(t, []string{
		`{__name__="m", a="1", z="x"}`,
		`{__name__="m", b="1", z="x"}`,
		`{__name__="m", z="x"}`,
		`{__name__="m", z="x", zz="1"}`,
	}, sets)
}

func TestSeriesFramesAndBatches(t *testing.T) {
	o := opts()
	o.MaxFrameBytes = 600 // a few chunks per frame
	f := newFixture(t, o)
	f.write(t, labels.FromStrings("__name__", "big"), ramp(2000, 1000)...)
	for _, job := range []string{"a", "b", "c", "d", "e"} {
		f.write(t, labels.FromStrings("__name__", "small", "job", job), ramp(3, 1000)...)
	}
	res, _, err := f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "big")}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Greater(t, res[0].frames, 1, "a series larger than a frame is split")
	require.Equal(t, ramp(2000, 1000), res[0].samples, "the frames of a series hold all its chunks, in order")

	// response_batch_size packs several series in one response.
	stream, err := f.client.Series(context.Background(), &storepb.SeriesRequest{MaxTime: math.MaxInt64,
		Matchers: []*storepb.LabelMatcher{eq("__name__", "small")}, ResponseBatchSize: 2})
	require.NoError(t, err)
	var sizes []int
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		sizes = append(sizes, len(resp.GetBatch().GetSeries()))
	}
	require.Equal(t, []int{2, 2, 1}, sizes)
}

func TestSeriesHistogramChunks(t *testing.T) {
	f := newFixture(t, opts("replica", "a"))
	lset := labels.FromStrings("__name__", "latency")
	app := f.db.Appender(context.Background())
	for i := range 10 {
		h := &histogram.Histogram{Count: uint64(i + 1), Sum: float64(i), Schema: 0, ZeroThreshold: 0.001,
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{int64(i + 1)}}
		_, err := app.AppendHistogram(0, lset, int64(i)*1000, h, nil)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	stream, err := f.client.Series(context.Background(), &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "latency")}})
	require.NoError(t, err)
	resp, err := stream.Recv()
	require.NoError(t, err)
	c := resp.GetSeries().Chunks[0].Raw
	require.Equal(t, storepb.Chunk_HISTOGRAM, c.Type)
	chk, err := chunkenc.FromData(chunkenc.EncHistogram, c.Data)
	require.NoError(t, err)
	require.Equal(t, 10, chk.NumSamples())
	it := chk.Iterator(nil)
	require.Equal(t, chunkenc.ValHistogram, it.Next())
	_, h := it.AtHistogram(nil)
	require.Equal(t, uint64(1), h.Count)
}

func TestBadAndHostileRequests(t *testing.T) {
	o := opts("replica", "a")
	f := newFixture(t, o)
	for i := range 50 {
		f.write(t, labels.FromStrings("__name__", "m", "i", string(rune('a'+i%26))+string(rune('a'+i/26))), ramp(500, 1000)...)
	}
	for name, req := range map[string]*storepb.SeriesRequest{
		"bad regex":        {MaxTime: 1, Matchers: []*storepb.LabelMatcher{re("__name__", "(")}},
		"no matchers":      {MaxTime: 1},
		"only external":    {MaxTime: 1, Matchers: []*storepb.LabelMatcher{eq("replica", "a")}},
		"min after max":    {MinTime: 5, MaxTime: 1, Matchers: []*storepb.LabelMatcher{eq("__name__", "m")}},
		"negative limit":   {MaxTime: 1, Limit: -1, Matchers: []*storepb.LabelMatcher{eq("__name__", "m")}},
		"unknown matcher":  {MaxTime: 1, Matchers: []*storepb.LabelMatcher{{Type: 9, Name: "__name__", Value: "m"}}},
		"empty label name": {MaxTime: 1, Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "", Value: "m"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := f.series(t, req)
			if name == "empty label name" {
				// Prometheus accepts a matcher on the empty name; it matches
				// nothing here.
				require.NoError(t, err)
				return
			}
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		})
	}

	// A matcher matching every series over all time is bounded: the
	// buffer of the re-sort (external labels) by MaxBufferBytes…
	small := opts("replica", "a")
	small.MaxBufferBytes = 4096
	small.BufferFlag = "--storeapi.max-buffer-bytes"
	fs := newFixture(t, small)
	for i := range 50 {
		fs.write(t, labels.FromStrings("__name__", "m", "i", string(rune('a'+i%26))+string(rune('a'+i/26))), ramp(500, 1000)...)
	}
	_, _, err := fs.series(t, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{re("__name__", ".+")}})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "--storeapi.max-buffer-bytes")

	// …and the samples by the tenant's samples-per-query limit.
	limited := opts("replica", "a")
	limited.SampleLimit = func(context.Context) (int, string) { return 1000, "--limits.max-samples-per-query" }
	fl := newFixture(t, limited)
	for i := range 5 {
		fl.write(t, labels.FromStrings("__name__", "m", "i", string(rune('a'+i))), ramp(500, 1000)...)
	}
	_, _, err = fl.series(t, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{re("__name__", ".+")}})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.ErrorContains(t, err, `tenant "anonymous"`)
	require.ErrorContains(t, err, "--limits.max-samples-per-query")
	res, _, err := fl.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("i", "a")}})
	require.NoError(t, err, "a call under the limit is served")
	require.Len(t, res, 1)
}

// TestClientThatStopsReading: a client that never reads holds the server
// only until its deadline; the handler then returns.
func TestClientThatStopsReading(t *testing.T) {
	o := opts() // streamed, nothing held
	f := newFixture(t, o)
	for i := range 200 {
		f.write(t, labels.FromStrings("__name__", "m", "i", string(rune('a'+i%26))+string(rune('a'+i/26%26))), ramp(2000, 1000)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stream, err := f.client.Series(ctx, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "m")}})
	require.NoError(t, err)
	_, err = stream.Header() // the call started; now never Recv
	require.NoError(t, err)
	<-ctx.Done()
	// The server's handler has ended (goleak in TestMain checks no
	// goroutine is left); a new call is served.
	res, _, err := f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("i", "aa")}})
	require.NoError(t, err)
	require.Len(t, res, 1)
}

func TestLabelNamesAndValues(t *testing.T) {
	f := newFixture(t, opts("cluster", "eu", "replica", "a"))
	f.write(t, labels.FromStrings("__name__", "up", "job", "api"), ramp(3, 1000)...)
	f.write(t, labels.FromStrings("__name__", "up", "job", "db", "env", "prod"), ramp(3, 1000)...)
	ctx := context.Background()

	names, err := f.client.LabelNames(ctx, &storepb.LabelNamesRequest{End: math.MaxInt64})
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "cluster", "env", "job", "replica"}, names.Names)
	names, err = f.client.LabelNames(ctx, &storepb.LabelNamesRequest{End: math.MaxInt64, WithoutReplicaLabels: []string{"replica"}, Matchers: []*storepb.LabelMatcher{eq("job", "api")}})
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "cluster", "job"}, names.Names)
	names, err = f.client.LabelNames(ctx, &storepb.LabelNamesRequest{End: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("cluster", "us")}})
	require.NoError(t, err)
	require.Empty(t, names.Names)

	values, err := f.client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "job", End: math.MaxInt64})
	require.NoError(t, err)
	require.Equal(t, []string{"api", "db"}, values.Values)
	values, err = f.client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "cluster", End: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("job", "db")}})
	require.NoError(t, err)
	require.Equal(t, []string{"eu"}, values.Values)
	values, err = f.client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "cluster", End: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("job", "nope")}})
	require.NoError(t, err)
	require.Empty(t, values.Values)
	values, err = f.client.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "replica", End: math.MaxInt64, WithoutReplicaLabels: []string{"replica"}})
	require.NoError(t, err)
	require.Empty(t, values.Values)
	_, err = f.client.LabelValues(ctx, &storepb.LabelValuesRequest{End: math.MaxInt64})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestInfo(t *testing.T) {
	o := opts("cluster", "eu", "replica", "a")
	o.Retention = 24 * time.Hour
	f := newFixture(t, o)
	before := time.Now()
	info, err := f.info.Info(context.Background(), &infopb.InfoRequest{})
	require.NoError(t, err)
	require.Equal(t, "sidecar", info.ComponentType)
	require.Len(t, info.LabelSets, 1)
	require.Equal(t, labels.FromStrings("cluster", "eu", "replica", "a"), pbLabels(info.LabelSets[0].Labels))
	require.NotNil(t, info.Store)
	require.True(t, info.Store.SupportsWithoutReplicaLabels)
	require.Equal(t, int64(math.MaxInt64), info.Store.MaxTime)
	require.LessOrEqual(t, info.Store.MinTime, before.Add(-24*time.Hour+time.Minute).UnixMilli())
	require.Len(t, info.Store.TsdbInfos, 1)

	// Without external labels there is no label set, as with a sidecar
	// in front of a Prometheus that has none.
	info, err = newFixture(t, opts()).info.Info(context.Background(), &infopb.InfoRequest{})
	require.NoError(t, err)
	require.Empty(t, info.LabelSets)
}

func TestTenantOfTheContext(t *testing.T) {
	db := storagetest.New(t)
	st, err := storeapi.New(db, opts("replica", "a"))
	require.NoError(t, err)
	g := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, tenantStream{ss, tenant.NewContext(ss.Context(), "team-b")})
	}))
	st.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(l) }()
	defer g.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	f := &fixture{db: db, client: storepb.NewStoreClient(conn)}

	app := db.Appender(tenant.NewContext(context.Background(), "team-a"))
	_, err = app.Append(0, labels.FromStrings("__name__", "secret"), 1000, 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	app = db.Appender(tenant.NewContext(context.Background(), "team-b"))
	_, err = app.Append(0, labels.FromStrings("__name__", "mine"), 1000, 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	res, _, err := f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{re("__name__", ".+")}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, "mine", res[0].labels.Get("__name__"))
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tenantStream) Context() context.Context { return s.ctx }

func TestValidateExternalLabels(t *testing.T) {
	require.NoError(t, storeapi.ValidateExternalLabels(labels.FromStrings("cluster", "eu", "replica", "a")))
	require.ErrorContains(t, storeapi.ValidateExternalLabels(labels.FromStrings("__name__", "x")), "metric name")
	require.ErrorContains(t, storeapi.ValidateExternalLabels(labels.FromStrings("replica", "")), "empty value")
	require.ErrorContains(t, storeapi.ValidateExternalLabels(labels.FromStrings("a", "\xff")), "not valid UTF-8")
	_, err := storeapi.New(nil, storeapi.Options{})
	require.ErrorContains(t, err, "max frame bytes")
}

// stuckCall starts a Series call on a connection with a 64 KiB window and
// no dynamic window, and never reads it: the server can send only that
// much. It returns once the server has sent its first message (for a
// re-sorted call: once everything is held), and the cancel that ends it.
func stuckCall(t *testing.T, f *fixture, req *storepb.SeriesRequest) context.CancelFunc {
	t.Helper()
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := storepb.NewStoreClient(conn).Series(ctx, req)
	require.NoError(t, err)
	_, err = stream.Header()
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); _ = conn.Close() })
	return func() { cancel(); _ = conn.Close() }
}

// settled waits until f's held bytes stop changing, and returns them.
func settled(t *testing.T, f *fixture, want func(int64) bool) int64 {
	t.Helper()
	last := int64(-1)
	for range 500 {
		n := f.store.HeldBytes()
		if n == last && want(n) {
			return n
		}
		last = n
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("held bytes did not settle: %d", last)
	return 0
}

// TestBoundsAcrossCalls: MaxBufferBytes bounds what all Series calls hold
// together and MaxConcurrentSeries how many run at once; a call whose
// client stopped reading counts against both until it ends, and gives
// back what it held when it does.
func TestBoundsAcrossCalls(t *testing.T) {
	f := newFixture(t, opts("replica", "a"))
	for i := range 200 {
		f.write(t, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)), ramp(2000, 1000)...)
	}
	all := &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "m")}}

	// What one stuck call holds; cancelled, it holds nothing.
	stop := stuckCall(t, f, all)
	held := settled(t, f, func(n int64) bool { return n > 0 })
	require.Greater(t, held, int64(1<<17), "the stuck call holds less than the client's window")
	stop()
	settled(t, f, func(n int64) bool { return n == 0 })

	// A budget of twice that: a whole call fits (the client's window is
	// less than half of it), a second call fails while the first is held,
	// and is served once it has ended.
	o := opts("replica", "a")
	o.MaxBufferBytes = 2 * held
	o.BufferFlag = "--storeapi.max-buffer-bytes"
	g := serve(t, f.db, o)
	stop = stuckCall(t, g, all)
	settled(t, g, func(n int64) bool { return n > 0 })
	_, _, err := g.series(t, all)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "at once")
	require.ErrorContains(t, err, "--storeapi.max-buffer-bytes")
	require.LessOrEqual(t, g.store.HeldBytes(), o.MaxBufferBytes)
	stop()
	settled(t, g, func(n int64) bool { return n == 0 })
	res, _, err := g.series(t, all)
	require.NoError(t, err)
	require.Len(t, res, 200)

	// One Series call at a time: a second one waits for the slot until
	// its deadline (the server's query timeout, as levitated's
	// interceptor sets it), and is served once the first has ended.
	o = opts("replica", "a")
	o.MaxConcurrentSeries = 1
	o.ConcurrencyFlag = "--query.max-concurrency"
	h := serve(t, f.db, o, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if md, _ := metadata.FromIncomingContext(ss.Context()); len(md.Get("test-timeout")) == 0 {
			return handler(srv, ss)
		}
		ctx, cancel := context.WithTimeout(ss.Context(), 500*time.Millisecond)
		defer cancel()
		return handler(srv, ctxStream{ss, ctx})
	}))
	stop = stuckCall(t, h, all)
	stream, err := h.client.Series(metadata.AppendToOutgoingContext(context.Background(), "test-timeout", "1"), all)
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "--query.max-concurrency")
	stop()
	settled(t, h, func(n int64) bool { return n == 0 })
	res, _, err = h.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("i", "7")}})
	require.NoError(t, err)
	require.Len(t, res, 1)
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// Samples written with start timestamps (remote write 2.0's created
// timestamps) are stored in Prometheus' XOR2 and histogram-with-ST
// chunks, which no Thanos client reads: they are served as XOR and
// histogram chunks with the same samples, the start timestamps left out.
func TestSeriesWithStartTimestamps(t *testing.T) {
	f := newFixture(t, opts("replica", "a"))
	ctx := context.Background()
	app := f.db.AppenderV2(ctx)
	floats, hists := labels.FromStrings("__name__", "requests_total"), labels.FromStrings("__name__", "latency")
	for i := range 200 {
		ts := int64(i) * 15000
		_, err := app.Append(0, floats, 1, ts, float64(i*i), nil, nil, promstorage.AOptions{})
		require.NoError(t, err)
		h := &histogram.Histogram{Count: uint64(i + 1), Sum: float64(i), Schema: 0, ZeroThreshold: 0.001,
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{int64(i + 1)}}
		_, err = app.Append(0, hists, 1, ts, 0, h, nil, promstorage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())

	res, _, err := f.series(t, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "requests_total")}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	var want []sample
	for i := range 200 {
		want = append(want, sample{int64(i) * 15000, float64(i * i)})
	}
	require.Equal(t, want, res[0].samples, "XOR chunks (f.series refuses any other encoding)")

	stream, err := f.client.Series(ctx, &storepb.SeriesRequest{MaxTime: math.MaxInt64, Matchers: []*storepb.LabelMatcher{eq("__name__", "latency")}})
	require.NoError(t, err)
	n := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		for _, c := range resp.GetSeries().GetChunks() {
			require.Equal(t, storepb.Chunk_HISTOGRAM, c.Raw.Type)
			chk, err := chunkenc.FromData(chunkenc.EncHistogram, c.Raw.Data)
			require.NoError(t, err)
			it := chk.Iterator(nil)
			for it.Next() == chunkenc.ValHistogram {
				ts, h := it.AtHistogram(nil)
				require.Equal(t, int64(n)*15000, ts)
				require.Equal(t, uint64(n+1), h.Count)
				n++
			}
			require.NoError(t, it.Err())
		}
	}
	require.Equal(t, 200, n)
}
