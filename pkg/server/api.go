package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/notifications"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/levitated/levitated/pkg/matrixcodec"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/queryshard"
)

// apiEngine is the engine every HTTP and gRPC query runs on: shardable
// aggregations run over shards of the series in parallel (pkg/queryshard),
// those of a range function over a selector in one pass per series
// (pkg/rollup),
// each shard within the tenant's query limits (pkg/limits), and cacheable
// range queries are served through the results cache (resultscache.go).
func (s *Server) apiEngine() promql.QueryEngine {
	q := s.opts.Query
	q.EnsureDefaults()
	sharded := queryshard.New(s.queryEngine(), s.opts.QueryShards, q.Parser(), levpromql.EventFunctions()...).
		WithRollups(queryshard.RollupOptions{Timeout: q.Timeout, LookbackDelta: q.LookbackDelta, MaxSamples: q.MaxSamples})
	return s.cachedEngine(sharded)
}

// prometheusAPI mounts Prometheus' own web/api/v1 handlers, as Mimir does
// (pkg/api/handlers.go), so that query, query_range, series, labels, label
// values, query_exemplars, format_query, parse_query and the status
// endpoints answer byte for byte as Prometheus v3 does: same JSON codec,
// same error types and status codes. Rules, alerts and Alertmanagers come
// from the ruler (rules.go); what reads scrape state answers as a
// Prometheus with no scrape configured. Remote write, OTLP,
// /metadata and /status/tsdb are levitated's own routes (see routes).
func (s *Server) prometheusAPI() http.Handler {
	o := s.opts
	var none noScrapeState
	api := v1.NewAPI(
		// The engine with each tenant's query limits (limits.go).
		s.apiEngine(),
		s.query, // samples merged with change-event series
		nil,     // AppendableV2: remote write is mounted separately
		s.db,    // ExemplarQueryable
		func(context.Context) v1.ScrapePoolsRetriever { return none },
		func(context.Context) v1.TargetRetriever { return none },
		s.alertmanagerRetriever, // the ruler's notifier (rules.go)
		s.prometheusConfig,      // Prometheus' defaults with the external labels
		o.Flags,
		v1.GlobalURLOptions{ListenAddress: o.ListenAddress, Host: o.ListenAddress, Scheme: "http"},
		s.whenReady,
		noAdminStats{}, // /status/tsdb is served from the store by levitated's handler
		o.DataDir,
		false, // admin APIs off; levitated's POST /api/v1/admin/flush is separate
		false, // search APIs off
		0,     // max search limit
		s.logger,
		s.rulesRetriever,                // the rules of the caller's tenant (rules.go)
		5e7,                             // remote read sample limit (Prometheus' default)
		10,                              // remote read concurrency (Prometheus' default)
		1048576,                         // remote read bytes per frame (Prometheus' default)
		false,                           // not an agent
		regexp.MustCompile(`^(?s:.*)$`), // CORS origin, Prometheus' default ".*"
		s.runtimeInfo,
		&v1.PrometheusVersion{
			Version:   PrometheusVersion,
			Revision:  "levitated-" + o.Version,
			Branch:    "levitated",
			BuildUser: "levitated",
			GoVersion: runtime.Version(),
		},
		func() []notifications.Notification { return nil },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		o.Registry,
		o.Registry,
		nil,   // default stats renderer
		false, // remote write receiver: mounted separately
		nil,
		false, false, false, // OTLP: mounted separately
		o.Query.LookbackDelta,
		false, // type and unit labels
		false, // append metadata
		nil,   // default error codes
		nil,   // feature registry
		v1.OpenAPIOptions{},
		s.opts.Query.Parser(),
		false, // query cost
		o.Query.Timeout,
	)
	// Prometheus' JSON, its large matrices encoded on all cores (the same
	// bytes), then the console's binary matrices, for a client that asks
	// for them in Accept (pkg/matrixcodec); JSON stays the default.
	api.ClearCodecs()
	api.InstallCodec(matrixcodec.JSONCodec{})
	api.InstallCodec(matrixcodec.Codec{})
	api.InstallCodec(matrixcodec.GzipCodec{})
	router := route.New()
	api.Register(router.WithPrefix("/api/v1"))
	return router
}

// whenReady answers 503 until the server is ready, as Prometheus does.
func (s *Server) whenReady(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("Service Unavailable"))
			return
		}
		f(w, r)
	}
}

func (s *Server) runtimeInfo() (v1.RuntimeInfo, error) {
	cwd, _ := os.Getwd()
	host, _ := os.Hostname()
	return v1.RuntimeInfo{
		StartTime:           s.started,
		CWD:                 cwd,
		Hostname:            host,
		ServerTime:          time.Now().UTC(),
		ReloadConfigSuccess: true,
		LastConfigTime:      s.started,
		GoroutineCount:      runtime.NumGoroutine(),
		GOMAXPROCS:          runtime.GOMAXPROCS(0),
		GOMEMLIMIT:          debug.SetMemoryLimit(-1),
		GOGC:                os.Getenv("GOGC"),
		GODEBUG:             os.Getenv("GODEBUG"),
		StorageRetention:    s.opts.Storage.Retention.String(),
	}, nil
}

// noScrapeState is the scrape state of a Prometheus with nothing
// configured: levitated receives data, it scrapes nothing.
type noScrapeState struct{}

func (noScrapeState) ScrapePools() []string { return []string{} }
func (noScrapeState) TargetsActive() map[string][]*scrape.Target {
	return map[string][]*scrape.Target{}
}
func (noScrapeState) TargetsDropped() map[string][]*scrape.Target {
	return map[string][]*scrape.Target{}
}
func (noScrapeState) TargetsDroppedCounts() map[string]int { return map[string]int{} }
func (noScrapeState) ScrapePoolConfig(string) (*config.ScrapeConfig, error) {
	return nil, errNoScrapePool
}

var errNoScrapePool = errors.New("scrape pool not found")

// noAdminStats answers the TSDB admin calls the API still routes with the
// admin APIs off: WAL replay status (done) and block metas (levitated has
// no Prometheus blocks).
type noAdminStats struct{}

func (noAdminStats) CleanTombstones() error { return errAdminDisabled }
func (noAdminStats) Delete(context.Context, int64, int64, ...*labels.Matcher) error {
	return errAdminDisabled
}
func (noAdminStats) Snapshot(string, bool) error { return errAdminDisabled }
func (noAdminStats) Stats(string, int) (*tsdb.Stats, error) {
	return nil, errAdminDisabled
}
func (noAdminStats) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	return tsdb.WALReplayStatus{}, nil
}
func (noAdminStats) BlockMetas() ([]tsdb.BlockMeta, error) { return []tsdb.BlockMeta{}, nil }

var errAdminDisabled = errors.New("admin APIs disabled")
