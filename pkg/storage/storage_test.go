package storage_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/tenant"
)

type point struct {
	t  int64
	v  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

// readAll returns the samples of every series matching ms in [mint, maxt].
func readAll(t *testing.T, ctx context.Context, db promstorage.Queryable, mint, maxt int64, ms ...*labels.Matcher) map[string][]point {
	t.Helper()
	q, err := db.Querier(mint, maxt)
	require.NoError(t, err)
	defer q.Close()
	ss := q.Select(ctx, true, nil, ms...)
	out := map[string][]point{}
	for ss.Next() {
		s := ss.At()
		var pts []point
		it := s.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				ts, v := it.At()
				pts = append(pts, point{t: ts, v: v})
			case chunkenc.ValHistogram:
				ts, h := it.AtHistogram(nil)
				pts = append(pts, point{t: ts, h: h})
			case chunkenc.ValFloatHistogram:
				ts, fh := it.AtFloatHistogram(nil)
				pts = append(pts, point{t: ts, fh: fh})
			}
		}
		require.NoError(t, it.Err())
		out[s.Labels().String()] = pts
	}
	require.NoError(t, ss.Err())
	return out
}

func metric(name string) *labels.Matcher {
	return labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name)
}

func appendFloats(t *testing.T, ctx context.Context, db *storage.DB, ls labels.Labels, pts ...point) {
	t.Helper()
	app := db.AppenderV2(ctx)
	for _, p := range pts {
		_, err := app.Append(0, ls, 0, p.t, p.v, p.h, p.fh, promstorage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
}

func reopen(t *testing.T, db *storage.DB, dir string, opts storage.Options) *storage.DB {
	t.Helper()
	require.NoError(t, db.Close())
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func testOptions() storage.Options {
	return storage.Options{Logger: quietLogger()}
}

func TestFloatSpecialValuesRoundTripBitForBit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := testOptions()
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	weirdNaN := math.Float64frombits(0x7ff8000000000bad)
	vals := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Float64frombits(value.StaleNaN), 0, math.Copysign(0, -1), weirdNaN, math.MaxFloat64, math.SmallestNonzeroFloat64, 1}
	ls := labels.FromStrings("__name__", "special", "job", "x")
	var pts []point
	for i, v := range vals {
		pts = append(pts, point{t: int64(i) * 1000, v: v})
	}
	appendFloats(t, ctx, db, ls, pts...)
	check := func(db *storage.DB) {
		got := readAll(t, ctx, db, math.MinInt64, math.MaxInt64, metric("special"))
		require.Len(t, got[ls.String()], len(vals))
		for i, p := range got[ls.String()] {
			require.Equal(t, int64(i)*1000, p.t)
			require.Equal(t, math.Float64bits(vals[i]), math.Float64bits(p.v), "sample %d", i)
		}
	}
	check(db)
	require.NoError(t, storage.CheckpointForTest(db))
	check(db)
	db = reopen(t, db, dir, opts)
	check(db)
	// A resend of the same bits, NaN included, is accepted after reopen.
	appendFloats(t, ctx, db, ls, pts[len(pts)-1])
	check(db)
}

func TestHistogramsRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := testOptions()
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	hs := tsdbutil.GenerateTestHistograms(50)
	fhs := tsdbutil.GenerateTestFloatHistograms(50)
	lh := labels.FromStrings("__name__", "h_int")
	lfh := labels.FromStrings("__name__", "h_float")
	app := db.AppenderV2(ctx)
	for i := range hs {
		_, err := app.Append(0, lh, 0, int64(i)*15000, 0, hs[i], nil, promstorage.AOptions{})
		require.NoError(t, err)
		_, err = app.Append(0, lfh, 0, int64(i)*15000, 0, nil, fhs[i], promstorage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	check := func(db *storage.DB) {
		got := readAll(t, ctx, db, math.MinInt64, math.MaxInt64, labels.MustNewMatcher(labels.MatchRegexp, "__name__", "h_.*"))
		require.Len(t, got[lh.String()], len(hs))
		require.Len(t, got[lfh.String()], len(fhs))
		for i := range hs {
			p := got[lh.String()][i]
			require.NotNil(t, p.h, "sample %d", i)
			want := hs[i].Copy()
			want.CounterResetHint = p.h.CounterResetHint // hints are the chunk's business
			require.True(t, want.Equals(p.h), "int histogram %d: %v != %v", i, p.h, hs[i])
			q := got[lfh.String()][i]
			require.NotNil(t, q.fh)
			wantF := fhs[i].Copy()
			wantF.CounterResetHint = q.fh.CounterResetHint
			require.True(t, wantF.Equals(q.fh), "float histogram %d", i)
		}
	}
	check(db)
	db = reopen(t, db, dir, opts)
	check(db)
}

func TestDuplicatesAndOutOfOrder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := testOptions()
	opts.OutOfOrderWindow = 10 * time.Minute
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	ls := labels.FromStrings("__name__", "m")
	min := int64(60_000)
	appendFloats(t, ctx, db, ls, point{t: 100 * min, v: 1}, point{t: 101 * min, v: 2}, point{t: 102 * min, v: 3})

	app := db.AppenderV2(ctx)
	// Identical resend of the newest and of an older sample: accepted.
	_, err = app.Append(0, ls, 0, 102*min, 3, nil, nil, promstorage.AOptions{})
	require.NoError(t, err)
	_, err = app.Append(0, ls, 0, 101*min, 2, nil, nil, promstorage.AOptions{})
	require.NoError(t, err)
	// Another value at an existing time: Prometheus' sentinel, naming the series.
	_, err = app.Append(0, ls, 0, 102*min, 4, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, promstorage.ErrDuplicateSampleForTimestamp)
	require.Contains(t, err.Error(), `m`)
	_, err = app.Append(0, ls, 0, 101*min, 5, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, promstorage.ErrDuplicateSampleForTimestamp)
	// Out of order inside the window: accepted.
	_, err = app.Append(0, ls, 0, 101*min+30_000, 1.5, nil, nil, promstorage.AOptions{})
	require.NoError(t, err)
	_, err = app.Append(0, ls, 0, 93*min, 0.5, nil, nil, promstorage.AOptions{})
	require.NoError(t, err)
	// Older than the window: too old.
	_, err = app.Append(0, ls, 0, 91*min, 0.1, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, promstorage.ErrTooOldSample)
	// The caller asked for in-order only.
	_, err = app.Append(0, ls, 0, 95*min, 0.2, nil, nil, promstorage.AOptions{RejectOutOfOrder: true})
	require.ErrorIs(t, err, promstorage.ErrOutOfOrderSample)
	require.NoError(t, app.Commit())

	want := []point{{t: 93 * min, v: 0.5}, {t: 100 * min, v: 1}, {t: 101 * min, v: 2}, {t: 101*min + 30_000, v: 1.5}, {t: 102 * min, v: 3}}
	for _, step := range []string{"memory", "checkpoint", "reopen"} {
		switch step {
		case "checkpoint":
			require.NoError(t, storage.CheckpointForTest(db))
		case "reopen":
			db = reopen(t, db, dir, opts)
		}
		got := readAll(t, ctx, db, math.MinInt64, math.MaxInt64, metric("m"))
		require.Equal(t, want, got[ls.String()], step)
	}
	// After reopen, duplicate detection reads the stored data.
	app = db.AppenderV2(ctx)
	_, err = app.Append(0, ls, 0, 93*min, 0.7, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, promstorage.ErrDuplicateSampleForTimestamp)
	_, err = app.Append(0, ls, 0, 102*min, 9, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, promstorage.ErrDuplicateSampleForTimestamp)
	_, err = app.Append(0, ls, 0, 101*min+30_000, 1.5, nil, nil, promstorage.AOptions{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	// With out-of-order ingest disabled, older samples are out of order.
	opts.OutOfOrderWindow = -1
	db = reopen(t, db, dir, opts)
	app = db.AppenderV2(ctx)
	_, err = app.Append(0, ls, 0, 101*min+10_000, 1, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, promstorage.ErrOutOfOrderSample)
	require.NoError(t, app.Rollback())
}

func TestExemplarsAndMetadata(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := testOptions()
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	ls := labels.FromStrings("__name__", "http_requests_total", "job", "api")
	app := db.AppenderV2(ctx)
	ex := []exemplar.Exemplar{
		{Labels: labels.FromStrings("trace_id", "abc"), Value: 1, Ts: 1000, HasTs: true},
		{Labels: labels.FromStrings("trace_id", "def"), Value: 2.5, Ts: 2000, HasTs: true},
	}
	md := metadata.Metadata{Type: "counter", Help: "Requests.", Unit: "requests"}
	_, err = app.Append(0, ls, 0, 2000, 7, nil, nil, promstorage.AOptions{Exemplars: ex, Metadata: md, MetricFamilyName: "http_requests_total"})
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	// Exemplars for an unknown series are refused without creating it.
	app = db.AppenderV2(ctx)
	_, err = app.(promstorage.ExemplarAppenderV2).AppendExemplars(0, labels.FromStrings("__name__", "nope"), ex)
	require.ErrorIs(t, err, promstorage.ErrNotFound)
	require.NoError(t, app.Rollback())

	check := func(db *storage.DB) {
		eq, err := db.ExemplarQuerier(ctx)
		require.NoError(t, err)
		res, err := eq.Select(0, 10_000, []*labels.Matcher{metric("http_requests_total")})
		require.NoError(t, err)
		require.Len(t, res, 1)
		require.Equal(t, ls, res[0].SeriesLabels)
		require.Equal(t, ex, res[0].Exemplars)
		res, err = eq.Select(1500, 10_000, []*labels.Matcher{metric("http_requests_total")})
		require.NoError(t, err)
		require.Equal(t, ex[1:], res[0].Exemplars)
		m, err := db.Metadata(ctx, "", 0, 0)
		require.NoError(t, err)
		require.Equal(t, map[string][]metadata.Metadata{"http_requests_total": {md}}, m)
	}
	check(db)
	db = reopen(t, db, dir, opts)
	check(db)
}

// TestMetadataFamilyOfSeries appends metadata as Prometheus' remote write
// 2.0 receiver does: with every sample of a series and no family name. It
// is stored by metric family, as Prometheus' /api/v1/metadata reports what
// a target exposes: the series of a classic histogram, a summary, a gauge
// histogram and an info metric belong to the family without their suffix,
// a native histogram and a counter keep their name.
func TestMetadataFamilyOfSeries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := testOptions()
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	hist := metadata.Metadata{Type: "histogram", Help: "Request latency.", Unit: "seconds"}
	summary := metadata.Metadata{Type: "summary", Help: "GC pauses."}
	gaugeHist := metadata.Metadata{Type: "gaugehistogram", Help: "Queue ages."}
	info := metadata.Metadata{Type: "info", Help: "Build."}
	counter := metadata.Metadata{Type: "counter", Help: "Requests."}
	native := metadata.Metadata{Type: "histogram", Help: "RPC latency."}
	gauge := metadata.Metadata{Type: "gauge", Help: "Items waiting."}
	app := db.AppenderV2(ctx)
	add := func(md metadata.Metadata, h *histogram.Histogram, kv ...string) {
		t.Helper()
		for ts := int64(1000); ts <= 3000; ts += 1000 {
			_, err := app.Append(0, labels.FromStrings(kv...), 0, ts, 1, h, nil, promstorage.AOptions{Metadata: md})
			require.NoError(t, err)
		}
	}
	add(hist, nil, "__name__", "http_request_duration_seconds_bucket", "le", "0.1")
	add(hist, nil, "__name__", "http_request_duration_seconds_bucket", "le", "+Inf")
	add(hist, nil, "__name__", "http_request_duration_seconds_sum")
	add(hist, nil, "__name__", "http_request_duration_seconds_count")
	add(summary, nil, "__name__", "go_gc_duration_seconds", "quantile", "0.5")
	add(summary, nil, "__name__", "go_gc_duration_seconds_sum")
	add(summary, nil, "__name__", "go_gc_duration_seconds_count")
	add(gaugeHist, nil, "__name__", "queue_age_bucket", "le", "+Inf")
	add(gaugeHist, nil, "__name__", "queue_age_gsum")
	add(gaugeHist, nil, "__name__", "queue_age_gcount")
	add(info, nil, "__name__", "build_info")
	add(counter, nil, "__name__", "http_requests_total")
	add(native, tsdbutil.GenerateTestHistogram(1), "__name__", "rpc_duration_count")
	add(gauge, nil, "__name__", "queue_sum")
	require.NoError(t, app.Commit())

	want := map[string][]metadata.Metadata{
		"http_request_duration_seconds": {hist},
		"go_gc_duration_seconds":        {summary},
		"queue_age":                     {gaugeHist},
		"build":                         {info},
		"http_requests_total":           {counter},
		"rpc_duration_count":            {native},
		"queue_sum":                     {gauge},
	}
	m, err := db.Metadata(ctx, "", 0, 0)
	require.NoError(t, err)
	require.Equal(t, want, m)
	db = reopen(t, db, dir, opts)
	m, err = db.Metadata(ctx, "http_request_duration_seconds", 0, 0)
	require.NoError(t, err)
	require.Equal(t, map[string][]metadata.Metadata{"http_request_duration_seconds": {hist}}, m)
}

func TestRetentionDropsWholePartitions(t *testing.T) {
	ctx := context.Background()
	opts := testOptions()
	opts.Retention = 2 * 24 * time.Hour
	dir := t.TempDir()
	db, err := storage.Open(dir, opts)
	require.NoError(t, err)
	day := int64(24 * time.Hour / time.Millisecond)
	old := labels.FromStrings("__name__", "old")
	live := labels.FromStrings("__name__", "live")
	appendFloats(t, ctx, db, old, point{t: 10 * day, v: 1}, point{t: 10*day + 1000, v: 2})
	appendFloats(t, ctx, db, live, point{t: 10 * day, v: 1}, point{t: 13*day + 5000, v: 3})
	require.NoError(t, storage.CheckpointForTest(db))
	require.NoError(t, storage.RetentionForTest(db))
	got := readAll(t, ctx, db, math.MinInt64, math.MaxInt64, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	require.Equal(t, map[string][]point{live.String(): {{t: 13*day + 5000, v: 3}}}, got)
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	names, _, err := q.LabelValues(ctx, "__name__", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"live"}, names)
	require.NoError(t, q.Close())
	db = reopen(t, db, dir, opts)
	got = readAll(t, ctx, db, math.MinInt64, math.MaxInt64, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	require.Equal(t, map[string][]point{live.String(): {{t: 13*day + 5000, v: 3}}}, got)
	// Samples older than the retention are out of bounds.
	app := db.AppenderV2(ctx)
	_, err = app.Append(0, old, 0, 10*day, 1, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, promstorage.ErrOutOfBounds)
	require.NoError(t, app.Rollback())
}

func TestTenantsAreIsolated(t *testing.T) {
	db, err := storage.Open(t.TempDir(), testOptions())
	require.NoError(t, err)
	defer db.Close()
	a := tenant.NewContext(context.Background(), "team-a")
	b := tenant.NewContext(context.Background(), "team-b")
	ls := labels.FromStrings("__name__", "up", "job", "x")
	appendFloats(t, a, db, ls, point{t: 1000, v: 1})
	appendFloats(t, b, db, ls, point{t: 1000, v: 2})
	require.Equal(t, []point{{t: 1000, v: 1}}, readAll(t, a, db, 0, 2000, metric("up"))[ls.String()])
	require.Equal(t, []point{{t: 1000, v: 2}}, readAll(t, b, db, 0, 2000, metric("up"))[ls.String()])
	require.Empty(t, readAll(t, tenant.NewContext(context.Background(), "team-c"), db, 0, 2000, metric("up")))
	ida, err := db.TenantID(context.Background(), "team-a")
	require.NoError(t, err)
	idb, err := db.TenantID(context.Background(), "team-b")
	require.NoError(t, err)
	require.NotEqual(t, ida, idb)
}

func TestInvalidLabelsAreRejected(t *testing.T) {
	db, err := storage.Open(t.TempDir(), testOptions())
	require.NoError(t, err)
	defer db.Close()
	app := db.AppenderV2(context.Background())
	defer app.Rollback()
	_, err = app.Append(0, labels.EmptyLabels(), 0, 1, 1, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, storage.ErrInvalidSample)
	var sb labels.ScratchBuilder
	sb.Add("a", "1")
	sb.Add("a", "2")
	_, err = app.Append(0, sb.Labels(), 0, 1, 1, nil, nil, promstorage.AOptions{})
	require.ErrorIs(t, err, storage.ErrInvalidSample)
	require.Contains(t, err.Error(), `"a"`)
	require.False(t, errors.Is(err, promstorage.ErrOutOfOrderSample))
}
