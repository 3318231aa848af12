// Package server runs levitated: it opens the store, builds the PromQL
// engine, mounts remote write, OTLP and Prometheus' HTTP API, and serves
// HTTP/1.1 and gRPC (h2c) on one listener. It owns the shutdown order:
// stop accepting, drain in-flight requests, stop gRPC, close the engine,
// close the store.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
	"google.golang.org/grpc"

	"github.com/levitated/levitated/pkg/impact"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/resultscache"
	"github.com/levitated/levitated/pkg/ruler"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
)

// Server is a running levitated. New opens everything and binds the
// listener; Run serves until its context ends, then shuts down.
type Server struct {
	opts     Options
	logger   *slog.Logger
	listener net.Listener
	db       *storage.DB
	events   *eventstore.Store
	query    queryable
	engine   *promql.Engine
	cache    *resultscache.Cache // nil when off (resultscache.go)
	grpc     *grpc.Server
	http     *http.Server
	table    *routeTable
	ruler    *ruler.Ruler
	impact   *impact.Service
	sec      *security
	ready    atomic.Bool
	started  time.Time
	// jobs run from Run until shutdown, stopped before the engine and
	// the store close (jobs.go).
	jobs *jobs

	runOnce sync.Once
}

// New opens the store in opts.DataDir, builds the engine and handlers, runs
// the registration functions and binds opts.ListenAddress. It serves nothing
// until Run. If New fails, everything it opened is closed.
func New(opts Options) (_ *Server, err error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, logger: opts.Logger, started: time.Now()}
	s.jobs = newJobs(s.logger)
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	s.newResultsCache()
	sopts := s.opts.Storage
	sopts.CallerRunsBackground = true
	s.db, err = storage.Open(opts.DataDir, sopts)
	if err != nil {
		return nil, fmt.Errorf("open storage: %w", err)
	}
	closers = append(closers, s.db.Close)
	s.jobs.add("storage", s.db.RunBackground)
	evns, err := s.db.Namespace(storage.OwnerEvents)
	if err != nil {
		return nil, err
	}
	s.events = eventstore.New(evns, eventstore.Options{Retention: opts.Storage.Retention, Logger: s.logger, OnChange: s.eventsChanged})
	s.jobs.add("event-retention", s.eventRetention)
	remote, err := s.newRemoteStore() // querystore.go
	if err != nil {
		return nil, err
	}
	if remote != nil {
		closers = append(closers, remote.Close)
	}
	s.query = newQueryable(s.db, s.events, remote)

	s.engine, err = levpromql.New(queryEngineOptions(opts))
	if err != nil {
		return nil, fmt.Errorf("build query engine: %w", err)
	}
	closers = append(closers, s.engine.Close)

	s.sec, err = s.newSecurity()
	if err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(s.sec.grpcOptions(opts.GRPCServerOptions)...)
	if err := s.mountStoreAPI(); err != nil {
		return nil, err
	}
	routes, err := s.routes()
	if err != nil {
		return nil, err
	}
	methods := grpcMethods

	ctx := context.Background()
	for _, register := range opts.Register {
		var added Routes
		if err := register(ctx, Services{
			GRPC:       s.grpc,
			Routes:     &added,
			DB:         s.db,
			Engine:     s.engine,
			Queryable:  s.query,
			Events:     s.events,
			Registerer: opts.Registry,
			Logger:     s.logger,
		}); err != nil {
			return nil, fmt.Errorf("register services: %w", err)
		}
		routes = append(routes, added.http...)
		methods = append(methods, added.grpc...)
	}
	m := newHTTPMetrics(opts.Registry)
	if s.table, err = newRouteTable(routes, methods, func(r *Route) http.Handler { return s.wrap(m, r) }); err != nil {
		return nil, err
	}
	s.sec.table = s.table

	s.listener, err = net.Listen("tcp", opts.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.ListenAddress, err)
	}
	closers = append(closers, s.listener.Close)
	if err := s.sec.checkListener(s.listener, opts.DataDir, s.logger); err != nil {
		return nil, err
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC clients speak h2c with prior knowledge
	protocols.SetHTTP2(true)            // and h2 over TLS
	s.http = &http.Server{
		Handler:           s.sec.httpHandler(s.handler()),
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	if s.listener, err = s.sec.tlsListener(s.listener, s.http); err != nil {
		return nil, err
	}
	// The store is open and every handler mounted: connections queue on the
	// bound listener until Run serves them, and are answered as ready.
	s.ready.Store(true)
	return s, nil
}

// handler routes gRPC requests to the gRPC server and the rest to the mux.
func (s *Server) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			// The interceptors reach the HTTP/2 stream's write deadline
			// through the context (security.grpcContext).
			rc := http.NewResponseController(w)
			s.grpc.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), writeDeadlineKey{}, rc.SetWriteDeadline)))
			return
		}
		s.table.mux.ServeHTTP(w, r)
	})
}

// wrap is what every route's handler runs in: the metrics of its route
// and, unless it serves while not ready, the readiness check.
func (s *Server) wrap(m *httpMetrics, r *Route) http.Handler {
	h := r.Handler
	if !r.AlwaysReady {
		h = s.whenReady(h.ServeHTTP)
	}
	return m.instrument(r.Name(), h)
}

// Addr is the address the server listens on (with the port chosen when
// ListenAddress ends in :0).
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// DB is the open store.
func (s *Server) DB() *storage.DB { return s.db }

// Run serves until ctx ends, then stops accepting connections, waits up to
// ShutdownTimeout for in-flight requests, and closes the engine and the
// store. It returns nil after a clean shutdown. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	err := errors.New("server: Run called twice")
	s.runOnce.Do(func() { err = s.run(ctx) })
	return err
}

func (s *Server) run(ctx context.Context) error {
	s.jobs.start()
	defer s.jobs.stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.http.Serve(s.listener) }()
	s.logger.Info("levitated is ready", "address", s.Addr().String(), "data_dir", s.opts.DataDir, "startup", time.Since(s.started))

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		errs = append(errs, fmt.Errorf("serve: %w", err))
	case <-s.storageFailed():
		errs = append(errs, s.storageFailure())
	case err := <-s.jobs.failure():
		errs = append(errs, err)
	}

	s.ready.Store(false)
	s.logger.Info("shutting down: draining in-flight requests", "timeout", s.opts.ShutdownTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(drainCtx); err != nil {
		errs = append(errs, fmt.Errorf("drain HTTP: %w", err))
		_ = s.http.Close()
	}
	s.grpc.Stop()
	s.jobs.stop()
	if err := s.engine.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close engine: %w", err))
	}
	if s.query.remote != nil {
		if err := s.query.remote.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close remote stores: %w", err))
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close storage: %w", err))
	}
	s.logger.Info("shut down")
	return errors.Join(errs...)
}

// httpMetrics instrument every route.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levitated_http_requests_total",
			Help: "HTTP requests by handler and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "levitated_http_request_duration_seconds",
			Help:                            "HTTP request latency by handler.",
			Buckets:                         prometheus.DefBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"handler"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levitated_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// instrument counts and times a route's handler, labelled with its name.
func (m *httpMetrics) instrument(name string, h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerInFlight(m.inFlight,
		promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(prometheus.Labels{"handler": name}),
			promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(prometheus.Labels{"handler": name}), h),
		),
	)
}
