package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"

	"github.com/levitated/levitated/pkg/impact"
	"github.com/levitated/levitated/pkg/ingest"
	"github.com/levitated/levitated/pkg/limits"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/remotestore"
	"github.com/levitated/levitated/pkg/ruler"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storeapi"
)

// DefaultListenAddress is Prometheus' port on the loopback interface: a
// fresh levitated is reachable only from the machine it runs on.
const DefaultListenAddress = "127.0.0.1:9090"

// PrometheusVersion is the Prometheus release whose HTTP API levitated
// serves (the v3 release of the pinned Prometheus module, v0.316.0).
// /api/v1/status/buildinfo reports it as the version, so that clients which
// choose API features by version (Grafana) treat levitated as that release.
const PrometheusVersion = "3.16.0"

// DefaultQueryResultsCacheBytes is the default size of the range-query
// results cache.
const DefaultQueryResultsCacheBytes = 64 << 20

// Options configure a Server. Start from DefaultOptions.
type Options struct {
	// ListenAddress is the one TCP address serving HTTP/1.1 and gRPC (h2c).
	ListenAddress string
	// DataDir holds the store.
	DataDir string
	// Storage configures the store; its Registerer and Logger default to
	// the server's.
	Storage storage.Options
	// Query configures the PromQL engine (timeout, max samples, lookback
	// delta, concurrency).
	Query levpromql.Options
	// QueryShards is how many shards of the series the HTTP API evaluates
	// a shardable aggregation over, concurrently (pkg/queryshard). Default:
	// the number of CPUs; 1 turns sharding off.
	QueryShards int
	// QueryResultsCacheBytes bounds the memory of the range-query results
	// cache (pkg/resultscache, invalidated exactly by every write); 0
	// turns it off. DefaultOptions: 64 MiB.
	QueryResultsCacheBytes int64
	// Write configures remote write and OTLP (body and label limits).
	Write ingest.RemoteWriteOptions
	// Security configures tokens, tenancy and TLS (security.go).
	Security SecurityOptions
	// Rules configure recording and alerting rules and the Alertmanagers
	// alerts go to (pkg/ruler, docs/rules.md); its Registerer and Logger
	// are the server's, its ExternalURL defaults to http://ListenAddress.
	Rules ruler.Options
	// StoreAPI configures the external labels and the Thanos StoreAPI
	// (storeapi.go).
	StoreAPI StoreAPIOptions
	// QueryStore are remote Thanos StoreAPI endpoints (--query.store)
	// whose series every query reads next to the store's (querystore.go,
	// pkg/remotestore). Its Registerer and Logger are the server's.
	QueryStore remotestore.Options
	// Limits are the per-tenant limits and their overrides file; its
	// Registerer and Logger are the server's.
	Limits limits.Options
	// Impact configures change intelligence: the signals every change is
	// judged on, and the scheduler (pkg/impact, docs/impact.md).
	Impact impact.Options
	// GRPCServerOptions are added to the gRPC server's options, after the
	// interceptors that authenticate calls.
	GRPCServerOptions []grpc.ServerOption
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// once Run's context ends.
	ShutdownTimeout time.Duration

	// Version is levitated's own version, reported as the revision in
	// /api/v1/status/buildinfo.
	Version string
	// Flags are reported by /api/v1/status/flags, as Prometheus reports its
	// command-line flags.
	Flags map[string]string

	// Registry receives every metric of the server, the store and the
	// engine, and is served on /metrics. Nil means a fresh registry.
	Registry *prometheus.Registry
	// Logger may be nil (logs are discarded).
	Logger *slog.Logger

	// Register adds services once the store is open, before the server
	// accepts connections. Other packages use it to mount their gRPC
	// services, gateway and HTTP routes.
	Register []func(ctx context.Context, s Services) error
}

// Services is what a registration function gets.
type Services struct {
	// GRPC is served on the listen address for requests with an
	// application/grpc content type.
	GRPC *grpc.Server
	// Routes takes the HTTP routes and gRPC methods the function adds, each
	// with the access it needs (route.go): a route reaches the mux, and a
	// method is authorized, only through it. A gRPC method not added here
	// needs the admin scope.
	Routes *Routes
	// DB is the open store; it is closed after the server stops.
	DB *storage.DB
	// Engine is the PromQL engine of the HTTP API.
	Engine *promql.Engine
	// Queryable is what the HTTP API queries: the store's series merged
	// with the change-event series, for the tenant of each call's context.
	Queryable promstorage.SampleAndChunkQueryable
	// Events is the change-event store.
	Events *eventstore.Store
	// Registerer and Logger are the server's.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Routes collects the routes and gRPC methods of a registration function.
type Routes struct {
	http []Route
	grpc []GRPCMethod
}

// Handle adds HTTP routes.
func (r *Routes) Handle(rs ...Route) { r.http = append(r.http, rs...) }

// HandleGRPC declares the access of gRPC methods registered on
// Services.GRPC.
func (r *Routes) HandleGRPC(ms ...GRPCMethod) { r.grpc = append(r.grpc, ms...) }

// DefaultMaxInflightWriteBytes is the default in-flight remote-write
// budget (--limits.max-inflight-write-bytes): two bodies of the largest
// size accepted (32 MiB decoded, up to as much compressed), or hundreds of
// a Prometheus sender's usual ones.
const DefaultMaxInflightWriteBytes = 128 << 20

// DefaultOptions returns the defaults: 127.0.0.1:9090, ./data, Prometheus'
// query defaults, 32 MiB remote-write bodies.
func DefaultOptions() Options {
	st := storage.DefaultOptions()
	st.Logger, st.Registerer = nil, nil // the server's, set by EnsureDefaults
	return Options{
		ListenAddress:   DefaultListenAddress,
		DataDir:         "./data",
		Storage:         st,
		Query:           levpromql.DefaultOptions(),
		Write:           ingest.DefaultRemoteWriteOptions(),
		Rules:           ruler.DefaultOptions(),
		StoreAPI:        StoreAPIOptions{MaxBufferBytes: storeapi.DefaultOptions().MaxBufferBytes},
		QueryStore:      remotestore.Options{MaxBytes: remotestore.DefaultMaxBytes},
		Limits:          limits.Options{MaxInflightWriteBytes: DefaultMaxInflightWriteBytes},
		ShutdownTimeout: 30 * time.Second,
		Version:         "devel",
		Impact:          impact.Options{Workers: impact.DefaultWorkers, CPUShare: impact.DefaultCPUShare},

		QueryResultsCacheBytes: DefaultQueryResultsCacheBytes,
	}
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	d := DefaultOptions()
	if o.ListenAddress == "" {
		o.ListenAddress = d.ListenAddress
	}
	if o.DataDir == "" {
		o.DataDir = d.DataDir
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = d.ShutdownTimeout
	}
	if o.QueryShards == 0 {
		o.QueryShards = runtime.GOMAXPROCS(0)
	}
	if o.Version == "" {
		o.Version = d.Version
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Query.EnsureDefaults()
	if o.Storage.Registerer == nil {
		o.Storage.Registerer = o.Registry
	}
	if o.Storage.Logger == nil {
		o.Storage.Logger = o.Logger
	}
	o.Storage.EnsureDefaults()
	if o.Query.Registerer == nil {
		o.Query.Registerer = o.Registry
	}
	if o.Query.Logger == nil {
		o.Query.Logger = o.Logger
	}
	if o.Write.Registerer == nil {
		o.Write.Registerer = o.Registry
	}
	if o.Write.Logger == nil {
		o.Write.Logger = o.Logger
	}
	if o.Write.LookbackDelta == 0 {
		o.Write.LookbackDelta = o.Query.LookbackDelta
	}
	o.Write.EnsureDefaults()
	if o.Rules.Registerer == nil {
		o.Rules.Registerer = o.Registry
	}
	if o.Rules.Logger == nil {
		o.Rules.Logger = o.Logger.With("component", "ruler")
	}
	o.Rules.EnsureDefaults()
	o.StoreAPI.ensureDefaults()
}

// Validate reports every field that cannot be used, in one error.
func (o Options) Validate() error {
	var errs []error
	if o.ListenAddress == "" {
		errs = append(errs, errors.New("server: listen address is empty"))
	}
	if o.DataDir == "" {
		errs = append(errs, errors.New("server: data dir is empty"))
	}
	if o.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("server: shutdown timeout %v is negative", o.ShutdownTimeout))
	}
	if o.QueryResultsCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("server: query results cache size %d is negative (--query.results-cache-bytes; 0 turns it off)", o.QueryResultsCacheBytes))
	}
	st := o.Storage
	errs = append(errs, st.Validate(), o.Query.Validate(), o.Write.Validate(), o.Limits.Defaults.Validate(), o.Rules.Validate())
	errs = append(errs, st.Validate(), o.Query.Validate(), o.Write.Validate(), o.Limits.Defaults.Validate(), o.StoreAPI.validate(), o.QueryStore.Validate())
	return errors.Join(errs...)
}
