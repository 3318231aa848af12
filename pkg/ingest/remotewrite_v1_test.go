package ingest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// TestRemoteWriteV1MatchesPrometheus sends the same remote write 1.0
// requests to levitated's handler and to Prometheus' own receiver
// (storage/remote.NewWriteHandler), each over its own real store, and
// requires the same status codes and, at the end, the same stored samples,
// histograms and exemplars. The only difference allowed is the one
// levitated documents: series that break the label rules are a 400 before
// anything is stored, where Prometheus drops them silently and answers 204.
func TestRemoteWriteV1MatchesPrometheus(t *testing.T) {
	ours, theirs := storagetest.New(t), storagetest.New(t)
	h, err := NewRemoteWriteHandler(ours, RemoteWriteOptions{})
	require.NoError(t, err)
	prom := remote.NewWriteHandler(slog.New(slog.DiscardHandler), nil, theirs,
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, true)

	now := time.Now().Truncate(time.Minute).Add(-30 * time.Minute).UnixMilli()
	lbl := func(nv ...string) []prompb.Label {
		var out []prompb.Label
		for i := 0; i < len(nv); i += 2 {
			out = append(out, prompb.Label{Name: nv[i], Value: nv[i+1]})
		}
		return out
	}
	a := lbl("__name__", "req_total", "job", "api", "service", "checkout")
	b := lbl("__name__", "req_total", "job", "api", "service", "cart")
	samples := func(from, n int, step int64, v0 float64) []prompb.Sample {
		var out []prompb.Sample
		for i := 0; i < n; i++ {
			out = append(out, prompb.Sample{Timestamp: now + int64(from+i)*step, Value: v0 + float64(i)})
		}
		return out
	}
	hist := prompb.FromIntHistogram(now+60_000, tsdbutil.GenerateTestHistogram(3))
	fhist := prompb.FromFloatHistogram(now+60_000, tsdbutil.GenerateTestFloatHistogram(4))
	badHist := prompb.FromIntHistogram(now+120_000, tsdbutil.GenerateTestHistogram(5))
	badHist.Count = &prompb.Histogram_CountInt{CountInt: 1} // fewer than its buckets
	cases := []struct {
		name      string
		req       prompb.WriteRequest
		deviation int // our status when it differs from Prometheus' by design
	}{
		{name: "valid", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: a, Samples: samples(0, 10, 15_000, 1), Exemplars: []prompb.Exemplar{{Labels: lbl("trace_id", "abc"), Value: 3, Timestamp: now + 30_000}}},
			{Labels: b, Samples: samples(0, 10, 15_000, 100)},
		}}},
		{name: "identical resend", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: a, Samples: samples(0, 10, 15_000, 1)}}}},
		{name: "out of order inside the window", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: a, Samples: []prompb.Sample{{Timestamp: now + 7_500, Value: 0.5}}}}}},
		{name: "duplicate timestamp, other value, rolls back the request", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: b, Samples: samples(10, 2, 15_000, 200)},
			{Labels: a, Samples: []prompb.Sample{{Timestamp: now + 15_000, Value: 42}}},
		}}},
		{name: "too old", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: a, Samples: []prompb.Sample{{Timestamp: now - int64(time.Hour/time.Millisecond), Value: 1}}}}}},
		{name: "too far in the future", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: b, Samples: []prompb.Sample{{Timestamp: now + int64(2*time.Hour/time.Millisecond), Value: 1}}}}}},
		{name: "histograms", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: lbl("__name__", "lat", "job", "api"), Histograms: []prompb.Histogram{hist}},
			{Labels: lbl("__name__", "flat", "job", "api"), Histograms: []prompb.Histogram{fhist}},
		}}},
		{name: "invalid histogram", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: lbl("__name__", "lat", "job", "api"), Histograms: []prompb.Histogram{badHist}}}}},
		{name: "unsorted labels", deviation: http.StatusBadRequest, req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: lbl("job", "api", "__name__", "odd"), Samples: samples(0, 1, 1, 1)},
		}}},
		{name: "empty request", req: prompb.WriteRequest{}},
		{name: "more samples after the failures", req: prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
			{Labels: b, Samples: samples(10, 5, 15_000, 300)},
			{Labels: a, Samples: samples(10, 5, 15_000, 11)},
		}}},
	}
	for _, c := range cases {
		body, err := proto.Marshal(&c.req)
		require.NoError(t, err)
		send := func(hh http.Handler) (int, string) {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
			r.Header.Set("Content-Type", ctV1)
			r.Header.Set("Content-Encoding", "snappy")
			w := httptest.NewRecorder()
			hh.ServeHTTP(w, r)
			return w.Code, w.Body.String()
		}
		gotCode, gotBody := send(serve(t, h))
		wantCode, wantBody := send(prom)
		if c.deviation != 0 {
			require.Equal(t, http.StatusNoContent, wantCode, "%s: Prometheus", c.name)
			require.Equal(t, c.deviation, gotCode, "%s: levitated: %s", c.name, gotBody)
			continue
		}
		require.Equal(t, wantCode, gotCode, "%s: levitated %q, Prometheus %q", c.name, gotBody, wantBody)
	}
	want := dump(t, theirs)
	// Prometheus sorted and stored the series levitated refused.
	delete(want, `{__name__="odd", job="api"}`)
	require.Equal(t, want, dump(t, ours))
}

// dump renders every series, sample and exemplar of the default tenant.
func dump(t *testing.T, db *storage.DB) map[string][]string {
	t.Helper()
	ctx := context.Background()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	out := map[string][]string{}
	ss := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		var pts []string
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				ts, v := it.At()
				pts = append(pts, labels.FromStrings("t", time.UnixMilli(ts).UTC().String(), "v", floatString(v)).String())
			case chunkenc.ValHistogram:
				ts, h := it.AtHistogram(nil)
				h.CounterResetHint = 0
				pts = append(pts, labels.FromStrings("t", time.UnixMilli(ts).UTC().String(), "h", h.String()).String())
			case chunkenc.ValFloatHistogram:
				ts, fh := it.AtFloatHistogram(nil)
				fh.CounterResetHint = 0
				pts = append(pts, labels.FromStrings("t", time.UnixMilli(ts).UTC().String(), "fh", fh.String()).String())
			}
		}
		require.NoError(t, it.Err())
		out[s.Labels().String()] = pts
	}
	require.NoError(t, ss.Err())
	eq, err := db.ExemplarQuerier(ctx)
	require.NoError(t, err)
	res, err := eq.Select(math.MinInt64, math.MaxInt64, []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")})
	require.NoError(t, err)
	for _, r := range res {
		for _, e := range r.Exemplars {
			out["exemplar "+r.SeriesLabels.String()] = append(out["exemplar "+r.SeriesLabels.String()], e.Labels.String()+" "+floatString(e.Value))
		}
	}
	return out
}

func floatString(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// A series seen before is appended by reference: the receiver finds it by
// its wire labels (SeriesByLabels) and builds no labels of its own.
// Checked through the store: the labels it hands out equal the series'.
func TestSeenSeriesUseStoreLabels(t *testing.T) {
	db := storagetest.New(t)
	h, err := NewRemoteWriteHandler(db, RemoteWriteOptions{})
	require.NoError(t, err)
	now := time.Now().Truncate(time.Minute).UnixMilli()
	write := func(ts int64) {
		t.Helper()
		req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "api"}},
			Samples: []prompb.Sample{{Timestamp: ts, Value: 1}},
		}}}
		body, err := proto.Marshal(&req)
		require.NoError(t, err)
		r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
		r.Header.Set("Content-Type", ctV1)
		r.Header.Set("Content-Encoding", "snappy")
		w := httptest.NewRecorder()
		serve(t, h).ServeHTTP(w, r)
		require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	}
	write(now - 1000)
	find := db.SeriesByLabels(context.Background())
	want := labels.FromStrings("__name__", "up", "job", "api")
	ref, stored, ok := find(want)
	require.True(t, ok)
	require.NotZero(t, ref)
	require.True(t, labels.Equal(want, stored))
	write(now)
	ref2, stored2, ok := find(want)
	require.True(t, ok)
	require.Equal(t, ref, ref2, "the second write went to another series")
	require.Equal(t, stored.String(), stored2.String())
	require.Len(t, dump(t, db)[want.String()], 2)
	_, _, ok = find(labels.FromStrings("__name__", "up", "job", "other"))
	require.False(t, ok)
}

// Bodies are read and decoded into pooled buffers: many requests of
// growing and shrinking sizes, with labels, exemplars and metadata, store
// exactly what Prometheus' receiver stores. A label or exemplar string
// that aliased a reused buffer would read a later request's bytes here.
func TestPooledBodiesAreNotRetained(t *testing.T) {
	ours, theirs := storagetest.New(t), storagetest.New(t)
	h, err := NewRemoteWriteHandler(ours, RemoteWriteOptions{})
	require.NoError(t, err)
	prom := remote.NewWriteHandler(slog.New(slog.DiscardHandler), nil, theirs,
		remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, true)
	now := time.Now().Truncate(time.Minute).Add(-30 * time.Minute).UnixMilli()
	for i := 0; i < 60; i++ {
		var req prompb.WriteRequest
		n := 1 + (i*7)%23 // sizes go up and down, so buffers are reused
		for j := 0; j < n; j++ {
			name := "m_" + strconv.Itoa(i) + "_" + strconv.Itoa(j)
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels: []prompb.Label{
					{Name: "__name__", Value: name},
					{Name: "pad", Value: string(bytes.Repeat([]byte{byte('a' + i%26)}, 1+(i*13)%200))},
				},
				Samples:   []prompb.Sample{{Timestamp: now + int64(i)*1000, Value: float64(i*100 + j)}},
				Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: name + "_trace"}}, Value: float64(j), Timestamp: now + int64(i)*1000}},
			})
		}
		req.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "m_" + strconv.Itoa(i) + "_0",
			Help: "help of request " + strconv.Itoa(i) + strings.Repeat(".", i)}}
		body, err := proto.Marshal(&req)
		require.NoError(t, err)
		for _, hh := range []http.Handler{serve(t, h), prom} {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
			r.Header.Set("Content-Type", ctV1)
			r.Header.Set("Content-Encoding", "snappy")
			w := httptest.NewRecorder()
			hh.ServeHTTP(w, r)
			require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
		}
	}
	require.Equal(t, dump(t, theirs), dump(t, ours))
	for i := 0; i < 60; i++ {
		name := "m_" + strconv.Itoa(i) + "_0"
		md, err := ours.Metadata(context.Background(), name, 0, 0)
		require.NoError(t, err)
		require.Len(t, md[name], 1, name)
		require.Equal(t, "help of request "+strconv.Itoa(i)+strings.Repeat(".", i), md[name][0].Help, name)
	}
}

// readLimited reads a body whose declared length is wrong or unknown as
// io.ReadAll would, and gives a truncated body's error.
func TestReadLimited(t *testing.T) {
	for _, c := range []struct {
		body        string
		size, limit int64
		want        string
		err         bool
	}{
		{body: "abcdef", size: 6, limit: 10, want: "abcdef"},
		{body: "abcdef", size: -1, limit: 10, want: "abcdef"},
		{body: "abcdef", size: 3, limit: 10, want: "abcdef"},                // more than declared: read on
		{body: "abcdefghijklmnop", size: 3, limit: 10, want: "abcdefghijk"}, // up to limit+1
		{body: "abcdefghijklmnop", size: 16, limit: 10, want: "abcdefghijk"},
		{body: "abc", size: 6, limit: 10, err: true}, // truncated
		{body: "", size: 0, limit: 10, want: ""},
	} {
		b, err := readLimited(strings.NewReader(c.body), c.size, c.limit)
		if c.err {
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "%+v", c)
			continue
		}
		require.NoError(t, err, "%+v", c)
		require.Equal(t, c.want, string(*b), "%+v", c)
	}
}
