// Command levitated serves Prometheus remote write, OTLP and the Prometheus
// HTTP API (and levitated's gRPC services) on one address, over a Pebble
// store in --data-dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"

	"github.com/levitated/levitated/pkg/memlimit"
	"github.com/levitated/levitated/pkg/notrace"
	"github.com/levitated/levitated/pkg/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "demo" {
		os.Exit(runDemo(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, starts the server and serves until SIGTERM or SIGINT,
// then drains in-flight requests and closes the store. It returns the exit
// code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], os.Stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "rules" {
		return runRulesCheck(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "backup" {
		return runBackup(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "kube-events" {
		return runKubeEvents(args[1:], stdout, stderr)
	}
	opts := server.DefaultOptions()
	fs, logLevel, showVersion, finish := newFlagSet(&opts, stdout)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := finish(); err != nil {
		fmt.Fprintf(stderr, "levitated: %v\n", err)
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "levitated %s (Prometheus API %s)\n", version, server.PrometheusVersion)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "levitated: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if opts.DataDir == "" {
		fmt.Fprintln(stderr, "levitated: --data-dir is empty: give the directory of the store (the default is ./data)")
		return 2
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "levitated: --log.level: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// The heap is sized to the cgroup's memory limit (a Kubernetes pod's),
	// as GOMEMLIMIT would, unless GOMEMLIMIT is set.
	if d, err := memlimit.Apply("/", os.Getenv, nil); err != nil {
		logger.Warn("Go memory limit not set", "err", err)
	} else {
		logger.Info("Go memory limit", "limit_bytes", d.Limit, "cgroup_limit_bytes", d.CgroupLimit, "source", d.Source, "reason", d.Reason)
	}
	// The collector's target: 30 % unless GOGC is set (memlimit.DefaultGCPercent says why).
	gcPercent, why := memlimit.ApplyGCPercent(os.Getenv, nil)
	logger.Info("Go GC percent", "percent", gcPercent, "reason", why)

	// No spans are exported: the engine's and the API's spans are no-ops,
	// as Prometheus makes them when tracing is not configured (its
	// tracing.Manager). OpenTelemetry's default global provider looks the
	// tracer up under a lock and allocates a span per call, waiting for a
	// provider that is never set; its no-op provider still allocates a
	// context per span (notrace says why that matters).
	otel.SetTracerProvider(notrace.TracerProvider{})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Registry = reg
	opts.Logger = logger
	opts.Version = version
	opts.Flags = map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { opts.Flags[f.Name] = f.Value.String() })

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := server.New(opts)
	if err != nil {
		logger.Error("levitated could not start", "err", err)
		return 1
	}
	// SIGHUP reloads the rule files, the Alertmanager configuration and the
	// impact configuration, as in Prometheus; a bad file is logged and what
	// is in force kept.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := s.Reload(ctx); err != nil {
					logger.Error("reload", "err", err)
				}
			}
		}
	}()
	if err := s.Run(ctx); err != nil {
		logger.Error("levitated stopped with an error", "err", err)
		return 1
	}
	return 0
}

// newFlagSet binds every flag to opts. Help goes to out. finish, called
// after parsing, completes what several flags set together.
func newFlagSet(o *server.Options, out io.Writer) (fs *flag.FlagSet, logLevel *string, showVersion *bool, finish func() error) {
	fs = flag.NewFlagSet("levitated", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, "Usage: levitated [flags]\n       levitated token create|list|revoke (see levitated token --help)\n       levitated demo [flags] (a canary rollout judged in stages, on this machine)\n       levitated rules check FILE... (check rule files, as promtool check rules)\n       levitated check --data-dir DIR (verify every checksum of a stopped store or a backup)\n       levitated backup [--url URL] [--to DIR] (a consistent copy of a running levitated's store)\n       levitated kube-events [flags] (Kubernetes changes as events; see levitated kube-events --help)\n\n"+
			"levitated receives Prometheus remote write (1.0 and 2.0, on /api/v1/write and\n"+
			"/api/v1/push) and OTLP metrics (/api/v1/otlp/v1/metrics), and serves the\n"+
			"Prometheus HTTP API (/api/v1/...) and levitated's gRPC services, all on one\n"+
			"address. SIGTERM drains in-flight requests and closes the store cleanly;\n"+
			"SIGHUP (or POST /-/reload) reloads the rule files and the impact configuration.\n\n"+
			"Flags (one or two dashes):\n")
		fs.PrintDefaults()
	}

	fs.StringVar(&o.ListenAddress, "listen-address", o.ListenAddress,
		"`address` serving HTTP/1.1 and gRPC (h2c); Prometheus' port on loopback by default, use :9090 to accept remote connections (which needs a token: docs/security.md)")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "`directory` of the store (created if missing)")
	fs.DurationVar(&o.Storage.Retention, "storage.retention", o.Storage.Retention, "how long samples and events are kept")
	fs.DurationVar(&o.Storage.OutOfOrderWindow, "storage.out-of-order-window", o.Storage.OutOfOrderWindow,
		"how far behind the newest sample a sample may arrive; negative disables out-of-order ingest")
	fs.DurationVar(&o.Query.Timeout, "query.timeout", o.Query.Timeout, "maximum time a query may take, queueing included")
	fs.IntVar(&o.Query.MaxSamples, "query.max-samples", o.Query.MaxSamples, "maximum samples a single query may load into memory; a subquery evaluated at more steps than this is refused (422) before it runs")
	fs.IntVar(&o.Query.MaxQueryLength, "query.max-length", o.Query.MaxQueryLength,
		"longest query text accepted, in bytes, checked before it is parsed (by the API, rules, the canary judge)")
	fs.IntVar(&o.Query.MaxQueryDepth, "query.max-depth", o.Query.MaxQueryDepth,
		"deepest query accepted, checked before it is parsed: each bracket, and each operator within one bracket, adds a level")
	fs.DurationVar(&o.Query.LookbackDelta, "query.lookback-delta", o.Query.LookbackDelta,
		"how far back an instant selector looks for a sample")
	fs.IntVar(&o.QueryShards, "query.shards", o.QueryShards,
		"evaluate shardable aggregations (sum, count, min, max, group, topk, bottomk of per-series expressions) over this many shards of the series in parallel; 0 means one per CPU, 1 turns it off")
	fs.Int64Var(&o.QueryResultsCacheBytes, "query.results-cache-bytes", o.QueryResultsCacheBytes,
		"memory for cached range-query results (served again for the steps no write has changed since; docs/query-cache.md); 0 turns the cache off")
	fs.IntVar(&o.Query.MaxConcurrency, "query.max-concurrency", o.Query.MaxConcurrency,
		"maximum queries evaluated at once; more wait for a slot")
	fs.Int64Var(&o.Write.MaxBodyBytes, "write.max-body-bytes", o.Write.MaxBodyBytes,
		"largest compressed remote-write or OTLP body accepted (at most 33554432); larger ones get 400")
	fs.IntVar(&o.Write.MaxLabelsPerSeries, "write.max-labels-per-series", o.Write.MaxLabelsPerSeries,
		"most labels a written series may have")
	fs.IntVar(&o.Write.MaxLabelNameBytes, "write.max-label-name-bytes", o.Write.MaxLabelNameBytes,
		"longest label name accepted")
	fs.IntVar(&o.Write.MaxLabelValueBytes, "write.max-label-value-bytes", o.Write.MaxLabelValueBytes,
		"longest label value accepted")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout,
		"how long in-flight requests may take to finish after SIGTERM")
	fs.StringVar(&o.Impact.ConfigFile, "impact.config", o.Impact.ConfigFile,
		"YAML `file` of the signals every change is judged on (docs/impact.md); re-read when it changes. Default: built-in signals for http_requests_total and OpenTelemetry's http_server_request_duration_seconds")
	fs.IntVar(&o.Impact.Workers, "impact.workers", o.Impact.Workers,
		"how many changes are judged at once, each service's one after another (docs/impact.md)")
	fs.Float64Var(&o.Impact.CPUShare, "impact.cpu-share", o.Impact.CPUShare,
		"share of the time the automatic judgements' queries may take, in (0, 1]: after a query that took d the next waits d×(1−share)/share, and none starts while a write request is in flight (for up to 1s); ingest first (docs/impact.md)")
	fs.BoolVar(&o.Impact.Disabled, "impact.disabled", o.Impact.Disabled,
		"do not judge changes automatically (the gate and GET /api/v1/events/{id}/impact still answer)")
	addSecurityFlags(fs, o)
	addRulesFlags(fs, o)
	addStoreAPIFlags(fs, o)
	qs := addQueryStoreFlags(fs, o)
	logLevel = fs.String("log.level", "info", "log `level`: debug, info, warn or error")
	showVersion = fs.Bool("version", false, "print the version and exit")
	return fs, logLevel, showVersion, qs.finish
}
