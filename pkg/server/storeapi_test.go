package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/levitated/levitated/api/proto/thanos/infopb"
	"github.com/levitated/levitated/api/proto/thanos/storepb"
	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// storeSeries is one series read through the StoreAPI.
type storeSeries struct {
	labels  labels.Labels
	samples map[int64]float64
}

// storeAPISeries calls thanos.Store/Series on the server's port and decodes
// the XOR chunks.
func storeAPISeries(ctx context.Context, conn *grpc.ClientConn, req *storepb.SeriesRequest) ([]storeSeries, error) {
	stream, err := storepb.NewStoreClient(conn).Series(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []storeSeries
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		batch := resp.GetBatch().GetSeries()
		if s := resp.GetSeries(); s != nil {
			batch = append(batch, s)
		}
		for _, s := range batch {
			if out, err = appendSeries(out, s); err != nil {
				return out, err
			}
		}
	}
}

// appendSeries adds one Series frame to out: a new series, or more chunks
// of the last one.
func appendSeries(out []storeSeries, s *storepb.Series) ([]storeSeries, error) {
	b := labels.NewScratchBuilder(len(s.Labels))
	for _, l := range s.Labels {
		b.Add(l.Name, l.Value)
	}
	lset := b.Labels()
	if len(out) == 0 || !labels.Equal(out[len(out)-1].labels, lset) {
		out = append(out, storeSeries{labels: lset, samples: map[int64]float64{}})
	}
	for _, c := range s.Chunks {
		if c.Raw.Type != storepb.Chunk_XOR {
			return out, fmt.Errorf("chunk type %v", c.Raw.Type)
		}
		chk, err := chunkenc.FromData(chunkenc.EncXOR, c.Raw.Data)
		if err != nil {
			return out, err
		}
		it := chk.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[len(out)-1].samples[ts] = v
		}
	}
	return out, nil
}

func storeMatchers(nv ...string) []*storepb.LabelMatcher {
	var ms []*storepb.LabelMatcher
	for i := 0; i < len(nv); i += 2 {
		ms = append(ms, &storepb.LabelMatcher{Type: storepb.LabelMatcher_RE, Name: nv[i], Value: nv[i+1]})
	}
	return ms
}

// TestStoreAPIOnTheServer: the running server serves the Thanos StoreAPI
// and Info API on its one port, with the external labels, over what
// remote write stored and the change-event series; /api/v1/status/config
// shows the external labels as Prometheus does.
func TestStoreAPIOnTheServer(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) {
		o.StoreAPI.ExternalLabels = labels.FromStrings("cluster", "eu-1", "replica", "a")
	})
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	s := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "service", "checkout")}
	for i := range 100 {
		s.Samples = append(s.Samples, prompb.Sample{Timestamp: base.Add(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: float64(i)})
	}
	require.Equal(t, http.StatusNoContent, writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{s}}).code)
	r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/events", fmt.Sprintf(
		`{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"checkout"}}`, base.Add(10*time.Minute).UTC().Format(time.RFC3339)))
	require.Equal(t, http.StatusOK, r.code, r.body)

	conn := grpcConn(t, srv)
	res, err := storeAPISeries(context.Background(), conn, &storepb.SeriesRequest{
		MinTime: base.UnixMilli(), MaxTime: base.Add(time.Hour).UnixMilli(),
		Matchers: storeMatchers("__name__", "http_requests_total|last9_change_events", "service", "checkout"),
	})
	require.NoError(t, err)
	require.Len(t, res, 2, "%v", res)
	require.Equal(t, labels.FromStrings("__name__", "http_requests_total", "cluster", "eu-1", "replica", "a", "service", "checkout"), res[0].labels)
	require.Len(t, res[0].samples, 100)
	for _, smp := range s.Samples {
		require.Equal(t, smp.Value, res[0].samples[smp.Timestamp])
	}
	require.Equal(t, "last9_change_events", res[1].labels.Get("__name__"), "change-event series are served too")
	require.Equal(t, "eu-1", res[1].labels.Get("cluster"))
	require.NotEmpty(t, res[1].samples)

	info, err := infopb.NewInfoClient(conn).Info(context.Background(), &infopb.InfoRequest{})
	require.NoError(t, err)
	require.Len(t, info.LabelSets, 1)
	require.Len(t, info.LabelSets[0].Labels, 2)
	require.Less(t, info.Store.MinTime, base.UnixMilli())

	cfg := get(t, srv.URL, "/api/v1/status/config", nil)
	require.Equal(t, http.StatusOK, cfg.code)
	require.Contains(t, cfg.body, `external_labels:\n    cluster: eu-1\n    replica: a\n`)
}

// TestStoreAPITenancy: a StoreAPI call acts for the tenant of its token,
// like every gRPC call: tenant A's token reads nothing of B's series, and
// on a non-loopback listener a call without a credential is refused.
func TestStoreAPITenancy(t *testing.T) {
	ts := newTokenSet(t)
	tokA := ts.create(t, "team-a", auth.AllScopes...)
	tokB := ts.create(t, "team-b", auth.AllScopes...)
	writeOnly := ts.create(t, "team-a", auth.ScopeWrite)
	srv := startWithTokens(t, ts, nil, func(o *server.Options) {
		o.ListenAddress = "0.0.0.0:0"
		o.StoreAPI.ExternalLabels = labels.FromStrings("replica", "a")
	})
	_, port, err := net.SplitHostPort(srv.Addr().String())
	require.NoError(t, err)
	for _, tn := range []struct{ token, metric, label string }{{tokA, "a_only_total", "a_label"}, {tokB, "b_only_total", "b_label"}} {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  labelsV1("__name__", tn.metric, tn.label, "secret", "job", "x"),
			Samples: []prompb.Sample{{Timestamp: time.Now().Add(-time.Minute).UnixMilli(), Value: 1}},
		}}}
		r := send(t, "http://127.0.0.1:"+port, tn.token, remoteWriteReq("/api/v1/write", string(encodeV1(t, req))))
		require.Equal(t, http.StatusNoContent, r.code, r.body)
	}
	// The listener is on every interface; connect through another one
	// when the machine has one.
	host := "127.0.0.1"
	if ip := nonLoopbackIP(); ip != "" {
		host = ip
	}
	t.Logf("connecting through %s", host)
	conn, err := grpc.NewClient(net.JoinHostPort(host, port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	all := &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: storeMatchers("__name__", ".+")}

	res, err := storeAPISeries(withToken(tokA), conn, all)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, "a_only_total", res[0].labels.Get("__name__"))
	res, err = storeAPISeries(withToken(tokB), conn, all)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, "b_only_total", res[0].labels.Get("__name__"))
	// A forged X-Scope-OrgID changes nothing without --auth.trusted-proxy.
	res, err = storeAPISeries(withToken(tokA, "x-scope-orgid", "team-b"), conn, all)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, "a_only_total", res[0].labels.Get("__name__"))

	// A matcher on B's label, with A's token: nothing.
	res, err = storeAPISeries(withToken(tokA), conn, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: storeMatchers("b_label", ".+")})
	require.NoError(t, err)
	require.Empty(t, res)
	res, err = storeAPISeries(withToken(tokA), conn, &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: storeMatchers("__name__", ".+"), SkipChunks: true})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, "a_only_total", res[0].labels.Get("__name__"))

	store := storepb.NewStoreClient(conn)
	for _, tn := range []struct{ token, own, other, ownLabel, otherLabel string }{
		{tokA, "a_only_total", "b_only_total", "a_label", "b_label"},
		{tokB, "b_only_total", "a_only_total", "b_label", "a_label"},
	} {
		values, err := store.LabelValues(withToken(tn.token), &storepb.LabelValuesRequest{Label: "__name__", Start: math.MinInt64, End: math.MaxInt64})
		require.NoError(t, err)
		require.Equal(t, []string{tn.own}, values.Values)
		values, err = store.LabelValues(withToken(tn.token), &storepb.LabelValuesRequest{Label: tn.otherLabel, Start: math.MinInt64, End: math.MaxInt64})
		require.NoError(t, err)
		require.Empty(t, values.Values, "the other tenant's label values")
		values, err = store.LabelValues(withToken(tn.token), &storepb.LabelValuesRequest{Label: "replica", Start: math.MinInt64, End: math.MaxInt64,
			Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: tn.other}}})
		require.NoError(t, err)
		require.Empty(t, values.Values, "an external label's value only where the tenant has series")
		names, err := store.LabelNames(withToken(tn.token), &storepb.LabelNamesRequest{Start: math.MinInt64, End: math.MaxInt64})
		require.NoError(t, err)
		require.Equal(t, []string{"__name__", tn.ownLabel, "job", "replica"}, names.Names)
		names, err = store.LabelNames(withToken(tn.token), &storepb.LabelNamesRequest{Start: math.MinInt64, End: math.MaxInt64,
			Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_EQ, Name: "__name__", Value: tn.other}}})
		require.NoError(t, err)
		require.Empty(t, names.Names)
	}
	// Info tells nothing of any tenant's data: the same answer for both.
	infoA, err := infopb.NewInfoClient(conn).Info(withToken(tokA), &infopb.InfoRequest{})
	require.NoError(t, err)
	infoB, err := infopb.NewInfoClient(conn).Info(withToken(tokB), &infopb.InfoRequest{})
	require.NoError(t, err)
	// min_time is now minus the retention, computed at each call: the
	// two calls may be a millisecond apart.
	require.InDelta(t, infoA.Store.MinTime, infoB.Store.MinTime, 60e3)
	infoB.Store.MinTime, infoB.Store.TsdbInfos[0].MinTime = infoA.Store.MinTime, infoA.Store.TsdbInfos[0].MinTime
	require.Equal(t, infoA.String(), infoB.String())
	require.Equal(t, "sidecar", infoA.ComponentType)

	// Without a credential, every StoreAPI and Info call is refused.
	_, err = storeAPISeries(context.Background(), conn, all)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	_, err = store.LabelNames(context.Background(), &storepb.LabelNamesRequest{End: math.MaxInt64})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	_, err = store.LabelValues(context.Background(), &storepb.LabelValuesRequest{Label: "__name__", End: math.MaxInt64})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	_, err = infopb.NewInfoClient(conn).Info(context.Background(), &infopb.InfoRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	// Nor does a bad token or Thanos' tenant header stand in for one.
	_, err = storeAPISeries(withToken("lvt_not-a-token"), conn, all)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	_, err = storeAPISeries(withToken("", "thanos-tenant", "team-a", "x-scope-orgid", "team-a"), conn, all)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	_, err = storeAPISeries(withToken(writeOnly), conn, all)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
}

// TestExternalLabelsValidated: bad external labels stop the server with
// an error naming them.
func TestExternalLabelsValidated(t *testing.T) {
	for name, ls := range map[string]labels.Labels{
		"replica":  labels.FromStrings("replica", ""),
		"__name__": labels.FromStrings("__name__", "x"),
	} {
		o := server.DefaultOptions()
		o.DataDir = t.TempDir()
		o.ListenAddress = "127.0.0.1:0"
		o.StoreAPI.ExternalLabels = ls
		_, err := server.New(o)
		require.Error(t, err)
		require.Contains(t, err.Error(), "external label "+strconv.Quote(name))
	}
}

// writeMany remote-writes n series of samples each, one per second up to
// about now, in requests of at most 100 series.
func writeMany(t *testing.T, base string, n, samples int, name string) {
	t.Helper()
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	for start := 0; start < n; start += 100 {
		var req prompb.WriteRequest
		for i := start; i < n && i < start+100; i++ {
			s := prompb.TimeSeries{Labels: labelsV1("__name__", name, "i", strconv.Itoa(i))}
			for j := range samples {
				s.Samples = append(s.Samples, prompb.Sample{
					Timestamp: end.Add(time.Duration(j-samples) * time.Second).UnixMilli(),
					Value:     float64(i*j) * 1.37,
				})
			}
			req.Timeseries = append(req.Timeseries, s)
		}
		r := writeV1(t, base, &req)
		require.Equal(t, http.StatusNoContent, r.code, r.body)
	}
}

// TestStoreAPIClientThatStopsReading: a client without a deadline that
// starts a large Series call and never reads holds the call only until
// the query timeout: the server then ends the stream (a write blocked on
// HTTP/2 flow control cannot see the handler's context), the call's
// concurrency slot and what it holds are let go, and the server shuts
// down cleanly (servertest checks).
func TestStoreAPIClientThatStopsReading(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) {
		o.Query.Timeout = 2 * time.Second
		o.Limits.Defaults.MaxConcurrentQueries = 1 // a call still held blocks the next one
		o.StoreAPI.ExternalLabels = labels.FromStrings("replica", "a")
	})
	writeMany(t, srv.URL, 400, 900, "m")
	// A window of 64 KiB and no dynamic window: the server can send only
	// that much until the client reads.
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	require.NoError(t, err)
	defer conn.Close()
	all := &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: storeMatchers("__name__", "m")}
	stuck, err := storepb.NewStoreClient(conn).Series(context.Background(), all)
	require.NoError(t, err)
	_, err = stuck.Header() // the call is admitted; now it is never read
	require.NoError(t, err)

	// After the timeout and the grace, the slot is free again: a call on
	// another connection is served.
	time.Sleep(2*time.Second + server.QueryWriteGrace + time.Second)
	other := grpcConn(t, srv)
	res, err := storeAPISeries(context.Background(), other, &storepb.SeriesRequest{
		MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: storeMatchers("__name__", "m", "i", "7"),
	})
	require.NoError(t, err, "the stuck call still holds its slot")
	require.Len(t, res, 1)
	require.Len(t, res[0].samples, 900)

	// The stuck stream was ended by the server: reading it now gives what
	// was sent before, then an error, not the whole answer.
	n := 0
	for {
		_, err = stuck.Recv()
		if err != nil {
			break
		}
		n++
	}
	require.NotErrorIs(t, err, io.EOF, "the stuck call was answered in full (%d frames): the test sent too little", n)
	require.Less(t, n, 400)
}

// nonLoopbackIP is an IPv4 address of this machine outside loopback, or "".
func nonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

// TestStoreAPIHostileRequests: through the real server, a Series call whose
// matchers match everything over all time is refused at the tenant's
// samples limit, naming it; hints, aggregates and shards a store cannot
// use (unknown aggregate, undecodable hints, a shard beyond the total) are
// ignored or match nothing, as a Thanos sidecar does, never an error or a
// panic; LabelNames and LabelValues over everything answer.
func TestStoreAPIHostileRequests(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) {
		o.Limits.Defaults.MaxSamplesPerQuery = 2000
		o.StoreAPI.ExternalLabels = labels.FromStrings("replica", "a")
	})
	writeMany(t, srv.URL, 20, 300, "m") // 6000 samples
	conn := grpcConn(t, srv)
	ctx := context.Background()
	all := func(ms ...*storepb.LabelMatcher) *storepb.SeriesRequest {
		return &storepb.SeriesRequest{MinTime: math.MinInt64, MaxTime: math.MaxInt64, Matchers: ms}
	}
	for name, ms := range map[string][]*storepb.LabelMatcher{
		`__name__=~".*"`:           {{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".*"}},
		`__name__!=""`:             {{Type: storepb.LabelMatcher_NEQ, Name: "__name__", Value: ""}},
		`i!~"x^", replica="a"`:     {{Type: storepb.LabelMatcher_NRE, Name: "i", Value: "x^"}, {Type: storepb.LabelMatcher_EQ, Name: "replica", Value: "a"}},
		`__name__=~".+", i=~".*"`:  {{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".+"}, {Type: storepb.LabelMatcher_RE, Name: "i", Value: ".*"}},
		`__name__=~"(?s).*|m|.+"`:  {{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: "(?s).*|m|.+"}},
		`__name__=~"m", i=~"\\d+"`: {{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: "m"}, {Type: storepb.LabelMatcher_RE, Name: "i", Value: `\d+`}},
	} {
		_, err := storeAPISeries(ctx, conn, all(ms...))
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%s: %v", name, err)
		require.ErrorContains(t, err, "--limits.max-samples-per-query", name)
	}
	// skip_chunks reads no samples: every series' labels.
	req := all(&storepb.LabelMatcher{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".*"})
	req.SkipChunks = true
	res, err := storeAPISeries(ctx, conn, req)
	require.NoError(t, err)
	require.Len(t, res, 20)

	one := storeMatchers("__name__", "m", "i", "3")
	plain, err := storeAPISeries(ctx, conn, all(one...))
	require.NoError(t, err)
	require.Len(t, plain, 1)
	require.Len(t, plain[0].samples, 300)
	odd := all(one...)
	odd.Aggregates = []storepb.Aggr{storepb.Aggr(99), storepb.Aggr_COUNT}
	odd.Hints = &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Hints", Value: []byte{0xff, 0x00, 0x13}}
	odd.MaxResolutionWindow = math.MaxInt64
	odd.PartialResponseStrategy = storepb.PartialResponseStrategy(42)
	odd.Step, odd.Range = -5, -1
	odd.QueryHints = &storepb.QueryHints{StepMillis: -1, Func: &storepb.Func{Name: "no_such_function"}, ProjectionLabels: []string{"nope"}}
	odd.Limit = math.MaxInt64
	odd.ResponseBatchSize = math.MaxInt64
	got, err := storeAPISeries(ctx, conn, odd)
	require.NoError(t, err)
	require.Equal(t, plain, got, "what a store cannot use is ignored")
	for _, si := range []*storepb.ShardInfo{{ShardIndex: 5, TotalShards: 2}, {ShardIndex: -1, TotalShards: 3}} {
		req := all(one...)
		req.ShardInfo = si
		got, err := storeAPISeries(ctx, conn, req)
		require.NoError(t, err)
		require.Empty(t, got, "a shard no series hashes to: %v", si)
	}

	store := storepb.NewStoreClient(conn)
	names, err := store.LabelNames(ctx, &storepb.LabelNamesRequest{Start: math.MinInt64, End: math.MaxInt64,
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: ".*"}}})
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "i", "replica"}, names.Names)
	values, err := store.LabelValues(ctx, &storepb.LabelValuesRequest{Label: "i", Start: math.MinInt64, End: math.MaxInt64, Limit: 5})
	require.NoError(t, err)
	require.Len(t, values.Values, 5)
}
