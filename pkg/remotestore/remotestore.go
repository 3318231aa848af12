// Package remotestore reads remote Thanos StoreAPI endpoints (typically one
// Thanos Querier, which fans out to a whole fleet) as a Prometheus
// storage.Queryable, so that levitated's queries merge the fleet's series
// with its own data (levitated --query.store, docs/scale-out.md).
//
// It calls the StoreAPI generated from Thanos' protos (api/proto/thanos):
// Series (streamed, XOR, histogram and float histogram chunks decoded with
// Prometheus' chunkenc), LabelNames and LabelValues; and Info, to learn each
// endpoint's external labels and time range, by which a select is pruned as
// a Thanos Querier prunes its stores.
//
// Partial-response policy: a failing endpoint (unreachable, an error, an
// answer over MaxBytes) never fails the query; its failure is returned as a
// warning (a Prometheus annotation, shown in the API's "warnings"), and the
// query answers with the rest, as Thanos' partial_response default does. The
// request asks a Querier for the same (PartialResponseStrategy WARN), and
// the Querier's own warnings are passed on. Only the end of the caller's
// context (the query timeout, a client gone) is an error.
//
// Tenancy: every endpoint is called with one identity, the bearer token of
// Options.BearerTokenFile (or none); the caller's credential is never forwarded.
// The fleet's series are merged into the queries of the tenants named in
// Options.Tenants, or of every tenant when it is empty.
package remotestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/levitated/levitated/api/proto/thanos/infopb"
	"github.com/levitated/levitated/api/proto/thanos/storepb"
	"github.com/levitated/levitated/pkg/tenant"
)

// Options configure a Store.
type Options struct {
	// Endpoints are the HOST:PORT addresses of StoreAPI servers (a Thanos
	// Querier, sidecar, store gateway, or another levitated).
	Endpoints []string
	// TLS, when not nil, is the client TLS configuration of every endpoint
	// (CA, client certificate and key files, server name, skip
	// verification), as Prometheus' tls_config; nil means plaintext (h2c).
	TLS *config.TLSConfig
	// BearerTokenFile holds the token sent as "authorization: Bearer ..."
	// on every call, read again for each (a rotated token is used at
	// once); empty sends none. Over plaintext it is sent only to loopback
	// endpoints.
	BearerTokenFile string
	// Tenants whose queries see the endpoints' series; empty means every
	// tenant.
	Tenants []string
	// LocalMetrics are metric names never read from the endpoints: the
	// change-event series, which are this levitated's own (a fleet of
	// levitated nodes serves theirs through the StoreAPI too).
	LocalMetrics []string
	// ReplicaLabels are sent as without_replica_labels: a Thanos Querier
	// (v0.32+) then removes them and merges the replicas of an HA pair.
	ReplicaLabels []string
	// MaxBytes bounds the labels and chunks one Select holds from one
	// endpoint; over it the endpoint's answer is dropped with a warning.
	MaxBytes int64
	// MaxBytesFlag names the setting of MaxBytes, for the warning.
	MaxBytesFlag string
	// InfoTTL is how long an endpoint's Info (external labels, time range)
	// is used before it is asked again.
	InfoTTL time.Duration
	// InfoTimeout bounds one Info call.
	InfoTimeout time.Duration
	// DialOptions are added to each endpoint's gRPC client options.
	DialOptions []grpc.DialOption
	// Registerer receives the metrics; may be nil.
	Registerer prometheus.Registerer
	// Logger may be nil.
	Logger *slog.Logger
}

// DefaultMaxBytes is the default of Options.MaxBytes.
const DefaultMaxBytes = 512 << 20

// Validate reports every unusable field in one error.
func (o Options) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, e := range o.Endpoints {
		host, port, err := net.SplitHostPort(e)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("remote store %q: not HOST:PORT: %w", e, err))
		case host == "" || port == "":
			errs = append(errs, fmt.Errorf("remote store %q: not HOST:PORT", e))
		case seen[e]:
			errs = append(errs, fmt.Errorf("remote store %q: given twice", e))
		case o.BearerTokenFile != "" && o.TLS == nil && !isLoopback(host):
			errs = append(errs, fmt.Errorf("remote store %q: a bearer token is sent over TLS only, or to a loopback address", e))
		}
		seen[e] = true
	}
	for _, t := range o.Tenants {
		if err := tenant.Validate(t); err != nil {
			errs = append(errs, fmt.Errorf("remote store tenant %q: %w", t, err))
		}
	}
	if o.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("remote store: max bytes %d is negative", o.MaxBytes))
	}
	if o.BearerTokenFile != "" {
		if _, err := readToken(o.BearerTokenFile); err != nil {
			errs = append(errs, fmt.Errorf("remote store: %w", err))
		}
	}
	if o.TLS != nil {
		if err := o.TLS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("remote store TLS: %w", err))
		}
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Store is the remote endpoints as a storage.Queryable.
type Store struct {
	opts      Options
	endpoints []*endpoint
	local     map[string]bool // LocalMetrics
	notLocal  *labels.Matcher // __name__ !~ LocalMetrics; nil without any
	tenants   map[string]bool
	logger    *slog.Logger
	failures  *prometheus.CounterVec
}

// New connects lazily to every endpoint (nothing is dialled until the first
// query) and returns the Store. Close it to close the connections.
func New(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxBytesFlag == "" {
		opts.MaxBytesFlag = "remotestore.Options.MaxBytes"
	}
	if opts.InfoTTL == 0 {
		opts.InfoTTL = time.Minute
	}
	if opts.InfoTimeout == 0 {
		opts.InfoTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts, logger: opts.Logger, tenants: map[string]bool{}, local: map[string]bool{}}
	if len(opts.LocalMetrics) > 0 {
		quoted := make([]string, len(opts.LocalMetrics))
		for i, n := range opts.LocalMetrics {
			quoted[i] = regexp.QuoteMeta(n)
			s.local[n] = true
		}
		m, err := labels.NewMatcher(labels.MatchNotRegexp, labels.MetricName, strings.Join(quoted, "|"))
		if err != nil {
			return nil, fmt.Errorf("remote store local metrics: %w", err)
		}
		s.notLocal = m
	}
	for _, t := range opts.Tenants {
		s.tenants[t] = true
	}
	s.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "levitated_query_store_failures_total",
		Help: "Calls to a remote StoreAPI endpoint (--query.store) that failed and were answered as a warning, by endpoint and method.",
	}, []string{"endpoint", "method"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.failures); err != nil {
			return nil, fmt.Errorf("remote store metrics: %w", err)
		}
	}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		tc, err := config.NewTLSConfig(opts.TLS)
		if err != nil {
			return nil, fmt.Errorf("remote store TLS: %w", err)
		}
		tc.NextProtos = []string{"h2"}
		creds = credentials.NewTLS(tc)
	}
	for _, addr := range opts.Endpoints {
		dopts := []grpc.DialOption{
			grpc.WithTransportCredentials(creds),
			// A message is one series (or a batch): as large as MaxBytes
			// allows, not gRPC's 4 MiB.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(min(opts.MaxBytes, math.MaxInt32)))),
		}
		if opts.BearerTokenFile != "" {
			dopts = append(dopts, grpc.WithPerRPCCredentials(bearerFile(opts.BearerTokenFile)))
		}
		dopts = append(dopts, opts.DialOptions...)
		conn, err := grpc.NewClient(addr, dopts...)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("remote store %q: %w", addr, err)
		}
		s.endpoints = append(s.endpoints, &endpoint{
			addr: addr, conn: conn, store: storepb.NewStoreClient(conn), info: infopb.NewInfoClient(conn), opts: &s.opts,
		})
	}
	return s, nil
}

// Close closes the connections.
func (s *Store) Close() error {
	var errs []error
	for _, e := range s.endpoints {
		errs = append(errs, e.conn.Close())
	}
	return errors.Join(errs...)
}

type localOnlyKey struct{}

// LocalOnly returns a context under which the Store answers nothing: what
// levitated serves to other stores (remote read to a Thanos sidecar) is its
// own data, never the fleet's again.
func LocalOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, localOnlyKey{}, true)
}

// applies reports whether the endpoints take part in a call with ctx.
func (s *Store) applies(ctx context.Context) bool {
	if ctx.Value(localOnlyKey{}) != nil {
		return false
	}
	return len(s.tenants) == 0 || s.tenants[tenant.FromContext(ctx)]
}

// remoteMatchers are the matchers sent to the endpoints: ms, and the
// exclusion of LocalMetrics. It reports false when ms select only a local
// metric: nothing to ask.
func (s *Store) remoteMatchers(ms []*labels.Matcher) ([]*labels.Matcher, bool) {
	if s.notLocal == nil {
		return ms, true
	}
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual && s.local[m.Value] {
			return nil, false
		}
	}
	return append(slices.Clip(ms), s.notLocal), true
}

// Querier returns the querier of [mint, maxt] over every endpoint. Its
// Select never fails: an endpoint's failure is a warning of its set.
func (s *Store) Querier(mint, maxt int64) (promstorage.Querier, error) {
	return &querier{s: s, mint: mint, maxt: maxt}, nil
}

type querier struct {
	s          *Store
	mint, maxt int64
}

func (q *querier) Close() error { return nil }

func (q *querier) Select(ctx context.Context, _ bool, hints *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.SeriesSet {
	if !q.s.applies(ctx) {
		return promstorage.EmptySeriesSet()
	}
	ms, ok := q.s.remoteMatchers(ms)
	if !ok {
		return promstorage.EmptySeriesSet()
	}
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	sets := make([]*fetch, 0, len(q.s.endpoints))
	for _, e := range q.s.endpoints {
		sets = append(sets, e.startSelect(ctx, q.s, mint, maxt, hints, ms))
	}
	return newMergedSet(sets)
}

func (q *querier) LabelValues(ctx context.Context, name string, hints *promstorage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, ok := q.s.remoteMatchers(ms)
	if !ok {
		return nil, nil, nil
	}
	return q.labels(ctx, func(ctx context.Context, e *endpoint) ([]string, []string, error) {
		return e.labelValues(ctx, name, q.mint, q.maxt, hints, ms)
	})
}

func (q *querier) LabelNames(ctx context.Context, hints *promstorage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, ok := q.s.remoteMatchers(ms)
	if !ok {
		return nil, nil, nil
	}
	return q.labels(ctx, func(ctx context.Context, e *endpoint) ([]string, []string, error) {
		return e.labelNames(ctx, q.mint, q.maxt, hints, ms)
	})
}

// labels calls every endpoint concurrently and merges the sorted answers;
// a failure is a warning.
func (q *querier) labels(ctx context.Context, call func(context.Context, *endpoint) ([]string, []string, error)) ([]string, annotations.Annotations, error) {
	if !q.s.applies(ctx) {
		return nil, nil, nil
	}
	type result struct {
		vals, warns []string
		err         error
	}
	res := make([]result, len(q.s.endpoints))
	var wg sync.WaitGroup
	for i, e := range q.s.endpoints {
		wg.Go(func() {
			v, w, err := call(ctx, e)
			res[i] = result{v, w, err}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var out []string
	var warns annotations.Annotations
	for i, r := range res {
		if r.err != nil {
			warns.Add(q.s.failed(q.s.endpoints[i], "labels", r.err))
			continue
		}
		for _, w := range r.warns {
			warns.Add(remoteWarning(q.s.endpoints[i].addr, w))
		}
		out = append(out, r.vals...)
	}
	slices.Sort(out)
	return slices.Compact(out), warns, nil
}

// failed counts and logs an endpoint's failure and returns it as the
// warning the query carries.
func (s *Store) failed(e *endpoint, method string, err error) error {
	s.failures.WithLabelValues(e.addr, method).Inc()
	s.logger.Warn("remote store failed; answering without it", "endpoint", e.addr, "method", method, "err", err)
	return fmt.Errorf("remote store %s: %w (partial response: the answer leaves this store out)", e.addr, err)
}

func remoteWarning(addr, w string) error {
	return fmt.Errorf("remote store %s: %s", addr, w)
}

// bearerFile is a gRPC per-call credential sending the bearer token held
// in a file, read for each call.
type bearerFile string

func (b bearerFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := readToken(string(b))
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity is false: Validate allows a token over
// plaintext only to loopback addresses.
func (bearerFile) RequireTransportSecurity() bool { return false }

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("bearer token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("bearer token file %s is empty", file)
	case strings.ContainsAny(tok, "\r\n"):
		return "", fmt.Errorf("bearer token file %s holds more than one line", file)
	}
	return tok, nil
}
