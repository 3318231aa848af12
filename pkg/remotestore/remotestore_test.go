package remotestore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/levitated/levitated/pkg/remotestore"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/storeapi"
	"github.com/levitated/levitated/pkg/tenant"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// peer is a real levitated store served through the real StoreAPI on
// loopback gRPC, counting the Series calls it answers.
type peer struct {
	db     *storage.DB
	addr   string
	series atomic.Int64
}

func newPeer(t *testing.T, o storeapi.Options) *peer {
	t.Helper()
	p := &peer{db: storagetest.New(t)}
	st, err := storeapi.New(p.db, o)
	require.NoError(t, err)
	g := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if strings.HasSuffix(info.FullMethod, "/Series") {
			p.series.Add(1)
		}
		return h(srv, ss)
	}))
	st.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	p.addr = l.Addr().String()
	return p
}

func extLabels(ls ...string) storeapi.Options {
	o := storeapi.DefaultOptions()
	o.ExternalLabels = labels.FromStrings(ls...)
	return o
}

// fill writes 3 float series and a native histogram, one sample a minute
// for 5 hours from 0 (several chunks a series).
func (p *peer) fill(t *testing.T) {
	t.Helper()
	app := p.db.Appender(context.Background())
	for i := range 300 {
		ts := int64(i) * 60_000
		for _, job := range []string{"a", "b", "c"} {
			_, err := app.Append(0, labels.FromStrings("__name__", "up", "job", job), ts, float64(i))
			require.NoError(t, err)
		}
		_, err := app.AppendHistogram(0, labels.FromStrings("__name__", "latency", "job", "a"), ts, tsdbutil.GenerateTestHistogram(int64(i)), nil)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
}

func newStore(t *testing.T, o remotestore.Options) *remotestore.Store {
	t.Helper()
	s, err := remotestore.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// sample is a float or histogram sample read back.
type sample struct {
	t int64
	f float64
	h *histogram.Histogram
}

type readSeries struct {
	labels  string
	samples []sample
}

func read(t *testing.T, q promstorage.Querier, ctx context.Context, hints *promstorage.SelectHints, ms ...*labels.Matcher) ([]readSeries, []string) {
	t.Helper()
	set := q.Select(ctx, true, hints, ms...)
	var out []readSeries
	for set.Next() {
		s := readSeries{labels: set.At().Labels().String()}
		it := set.At().Iterator(nil)
		for {
			vt := it.Next()
			if vt == chunkenc.ValNone {
				break
			}
			switch vt {
			case chunkenc.ValFloat:
				ts, v := it.At()
				s.samples = append(s.samples, sample{t: ts, f: v})
			case chunkenc.ValHistogram:
				ts, h := it.AtHistogram(nil)
				s.samples = append(s.samples, sample{t: ts, h: h})
			default:
				t.Fatalf("value type %v", vt)
			}
		}
		require.NoError(t, it.Err())
		out = append(out, s)
	}
	require.NoError(t, set.Err())
	var warns []string
	for _, w := range set.Warnings() {
		warns = append(warns, w.Error())
	}
	return out, warns
}

func eq(n, v string) *labels.Matcher { return labels.MustNewMatcher(labels.MatchEqual, n, v) }

// TestSelectThroughTheStoreAPI reads float and histogram series of a real
// StoreAPI, trimmed to the select's range, with the endpoint's external
// labels; matchers on the external labels prune the endpoint without a
// call.
func TestSelectThroughTheStoreAPI(t *testing.T) {
	p := newPeer(t, extLabels("cluster", "eu"))
	p.fill(t)
	s := newStore(t, remotestore.Options{Endpoints: []string{p.addr}})
	q, err := s.Querier(0, 300*60_000)
	require.NoError(t, err)
	ctx := context.Background()

	// 90 minutes from 100m: samples 100..190, across chunk boundaries.
	hints := &promstorage.SelectHints{Start: 100 * 60_000, End: 190 * 60_000}
	got, warns := read(t, q, ctx, hints, eq("__name__", "up"))
	require.Empty(t, warns)
	require.Len(t, got, 3)
	for i, job := range []string{"a", "b", "c"} {
		require.Equal(t, `{__name__="up", cluster="eu", job="`+job+`"}`, got[i].labels)
		require.Len(t, got[i].samples, 91)
		for j, smp := range got[i].samples {
			require.Equal(t, int64(100+j)*60_000, smp.t)
			require.Equal(t, float64(100+j), smp.f)
		}
	}
	got, _ = read(t, q, ctx, hints, eq("__name__", "latency"))
	require.Len(t, got, 1)
	require.Len(t, got[0].samples, 91)
	for j, smp := range got[0].samples {
		require.Equal(t, tsdbutil.GenerateTestHistogram(int64(100+j)).Count, smp.h.Count)
		require.Equal(t, tsdbutil.GenerateTestHistogram(int64(100+j)).Sum, smp.h.Sum)
	}
	calls := p.series.Load()

	// External labels prune: no call for another cluster; the label is
	// matched like any other for this one.
	got, warns = read(t, q, ctx, hints, eq("__name__", "up"), eq("cluster", "us"))
	require.Empty(t, got)
	require.Empty(t, warns)
	require.Equal(t, calls, p.series.Load(), "a pruned endpoint is not called")
	got, _ = read(t, q, ctx, hints, eq("__name__", "up"), eq("cluster", "eu"), eq("job", "b"))
	require.Len(t, got, 1)

	// Shards (hints) split the series disjointly by labels.StableHash.
	seen := map[string]int{}
	for i := range uint64(3) {
		got, _ := read(t, q, ctx, &promstorage.SelectHints{Start: 0, End: 300 * 60_000, ShardCount: 3, ShardIndex: i}, eq("job", "a"))
		for _, s := range got {
			seen[s.labels]++
		}
	}
	require.Equal(t, map[string]int{`{__name__="latency", cluster="eu", job="a"}`: 1, `{__name__="up", cluster="eu", job="a"}`: 1}, seen)

	// Label names and values.
	names, ws, err := q.LabelNames(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, ws)
	require.Equal(t, []string{"__name__", "cluster", "job"}, names)
	vals, _, err := q.LabelValues(ctx, "job", nil, eq("__name__", "up"))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, vals)
	vals, _, err = q.LabelValues(ctx, "job", nil, eq("cluster", "us"))
	require.NoError(t, err)
	require.Empty(t, vals)
}

// TestLocalMetrics: the metrics named local are never read from the
// endpoints; a select of one alone makes no call.
func TestLocalMetrics(t *testing.T) {
	p := newPeer(t, extLabels())
	p.fill(t)
	s := newStore(t, remotestore.Options{Endpoints: []string{p.addr}, LocalMetrics: []string{"up", "change_event_active"}})
	q, err := s.Querier(0, 300*60_000)
	require.NoError(t, err)
	ctx := context.Background()
	got, _ := read(t, q, ctx, nil, eq("__name__", "up"))
	require.Empty(t, got)
	require.Zero(t, p.series.Load())
	got, _ = read(t, q, ctx, nil, eq("job", "a"))
	require.Len(t, got, 1)
	require.Equal(t, `{__name__="latency", job="a"}`, got[0].labels)
	vals, _, err := q.LabelValues(ctx, "__name__", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"latency"}, vals)
}

// TestTimeRangePruning: an endpoint whose Info says it holds nothing before
// now-retention is not asked for older data.
func TestTimeRangePruning(t *testing.T) {
	o := extLabels()
	o.Retention = time.Hour
	p := newPeer(t, o)
	s := newStore(t, remotestore.Options{Endpoints: []string{p.addr}})
	now := time.Now().UnixMilli()
	q, err := s.Querier(0, now)
	require.NoError(t, err)
	ctx := context.Background()
	read(t, q, ctx, &promstorage.SelectHints{Start: 0, End: now - 2*time.Hour.Milliseconds()}, eq("__name__", "up"))
	require.Zero(t, p.series.Load())
	read(t, q, ctx, &promstorage.SelectHints{Start: 0, End: now}, eq("__name__", "up"))
	require.Equal(t, int64(1), p.series.Load())
}

// TestTenantsAndLocalOnly: the endpoints serve only the named tenants'
// queries, and nothing under LocalOnly.
func TestTenantsAndLocalOnly(t *testing.T) {
	p := newPeer(t, extLabels())
	p.fill(t)
	s := newStore(t, remotestore.Options{Endpoints: []string{p.addr}, Tenants: []string{"ops"}})
	q, err := s.Querier(0, 300*60_000)
	require.NoError(t, err)
	up := eq("__name__", "up")
	got, _ := read(t, q, tenant.NewContext(context.Background(), "ops"), nil, up)
	require.Len(t, got, 3)
	got, _ = read(t, q, tenant.NewContext(context.Background(), "team-b"), nil, up)
	require.Empty(t, got)
	got, _ = read(t, q, context.Background(), nil, up) // the anonymous tenant
	require.Empty(t, got)
	got, _ = read(t, q, remotestore.LocalOnly(tenant.NewContext(context.Background(), "ops")), nil, up)
	require.Empty(t, got)
	vals, _, err := q.LabelValues(tenant.NewContext(context.Background(), "team-b"), "job", nil)
	require.NoError(t, err)
	require.Empty(t, vals)
	require.Equal(t, int64(1), p.series.Load())
}

// TestPartialResponse: an endpoint that is down, or answers more than
// MaxBytes, is a warning beside the others' series; the end of the
// caller's context is an error.
func TestPartialResponse(t *testing.T) {
	p := newPeer(t, extLabels("cluster", "eu"))
	p.fill(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := l.Addr().String()
	require.NoError(t, l.Close())

	s := newStore(t, remotestore.Options{Endpoints: []string{down, p.addr}})
	q, err := s.Querier(0, 300*60_000)
	require.NoError(t, err)
	got, warns := read(t, q, context.Background(), nil, eq("__name__", "up"))
	require.Len(t, got, 3)
	require.Len(t, warns, 1)
	require.Contains(t, warns[0], "remote store "+down)
	require.Contains(t, warns[0], "partial response")
	names, ws, err := q.LabelNames(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "cluster", "job"}, names)
	require.Len(t, ws, 1)

	small := newStore(t, remotestore.Options{Endpoints: []string{p.addr}, MaxBytes: 1000, MaxBytesFlag: "--query.store.max-bytes"})
	q, err = small.Querier(0, 300*60_000)
	require.NoError(t, err)
	got, warns = read(t, q, context.Background(), nil, eq("__name__", "up"))
	require.Empty(t, got)
	require.Len(t, warns, 1)
	require.Contains(t, warns[0], "over 1000 bytes (--query.store.max-bytes)")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q, err = s.Querier(0, 300*60_000)
	require.NoError(t, err)
	set := q.Select(ctx, true, nil, eq("__name__", "up"))
	for set.Next() {
	}
	require.ErrorIs(t, set.Err(), context.Canceled)
}

// TestDuplicateEndpointsMergeIdenticalSeries: the same series from two
// endpoints (an HA pair behind two Queriers) is read once.
func TestDuplicateEndpointsMergeIdenticalSeries(t *testing.T) {
	a, b := newPeer(t, extLabels("cluster", "eu")), newPeer(t, extLabels("cluster", "eu"))
	a.fill(t)
	b.fill(t)
	s := newStore(t, remotestore.Options{Endpoints: []string{a.addr, b.addr}})
	q, err := s.Querier(0, 300*60_000)
	require.NoError(t, err)
	got, warns := read(t, q, context.Background(), nil, eq("__name__", "up"), eq("job", "a"))
	require.Empty(t, warns)
	require.Len(t, got, 1)
	require.Len(t, got[0].samples, 300)
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    remotestore.Options
		want string
	}{
		{remotestore.Options{Endpoints: []string{"no-port"}}, `remote store "no-port": not HOST:PORT`},
		{remotestore.Options{Endpoints: []string{":10901"}}, `remote store ":10901": not HOST:PORT`},
		{remotestore.Options{Endpoints: []string{"q:1", "q:1"}}, `remote store "q:1": given twice`},
		{remotestore.Options{Endpoints: []string{"q:1"}, BearerTokenFile: "/nonexistent"}, "a bearer token is sent over TLS only"},
		{remotestore.Options{Endpoints: []string{"127.0.0.1:1"}, BearerTokenFile: "/nonexistent"}, "bearer token: open /nonexistent"},
		{remotestore.Options{Tenants: []string{""}}, "remote store tenant"},
		{remotestore.Options{MaxBytes: -1}, "max bytes -1 is negative"},
	} {
		require.ErrorContains(t, tc.o.Validate(), tc.want)
	}
	require.NoError(t, remotestore.Options{Endpoints: []string{"[::1]:10901", "localhost:1"}}.Validate())
}

// TestTLSAndBearerToken: an endpoint served over TLS is verified with the
// CA file, and gets the bearer token of the file, read for each call.
func TestTLSAndBearerToken(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"thanos-query.fleet"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	tokFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokFile, []byte("first\n"), 0o600))

	db := storagetest.New(t)
	app := db.Appender(context.Background())
	_, err = app.Append(0, labels.FromStrings("__name__", "up"), 1000, 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	st, err := storeapi.New(db, extLabels())
	require.NoError(t, err)
	var tokens []string
	var mu sync.Mutex
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			md, _ := metadata.FromIncomingContext(ss.Context())
			mu.Lock()
			tokens = append(tokens, md.Get("authorization")...)
			mu.Unlock()
			return h(srv, ss)
		}))
	st.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)

	// A bearer token over plaintext to a remote address is refused.
	_, err = remotestore.New(remotestore.Options{Endpoints: []string{"thanos-query.fleet:10901"}, BearerTokenFile: tokFile})
	require.ErrorContains(t, err, "a bearer token is sent over TLS only")

	s := newStore(t, remotestore.Options{
		Endpoints:       []string{l.Addr().String()},
		TLS:             &config.TLSConfig{CAFile: caFile, ServerName: "thanos-query.fleet"},
		BearerTokenFile: tokFile,
	})
	q, err := s.Querier(0, 2000)
	require.NoError(t, err)
	got, warns := read(t, q, context.Background(), nil, eq("__name__", "up"))
	require.Empty(t, warns)
	require.Len(t, got, 1)
	require.NoError(t, os.WriteFile(tokFile, []byte("second\n"), 0o600))
	got, _ = read(t, q, context.Background(), nil, eq("__name__", "up"))
	require.Len(t, got, 1)
	mu.Lock()
	require.Equal(t, []string{"Bearer first", "Bearer second"}, tokens)
	mu.Unlock()

	// The wrong server name: the certificate is refused, a warning.
	bad := newStore(t, remotestore.Options{Endpoints: []string{l.Addr().String()}, TLS: &config.TLSConfig{CAFile: caFile, ServerName: "other"}})
	q, err = bad.Querier(0, 2000)
	require.NoError(t, err)
	got, warns = read(t, q, context.Background(), nil, eq("__name__", "up"))
	require.Empty(t, got)
	require.Len(t, warns, 1)
	require.Contains(t, warns[0], "certificate")
}
