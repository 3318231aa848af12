package server

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"path"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/api/proto/thanos/infopb"
	"github.com/levitated/levitated/api/proto/thanos/storepb"
	"github.com/levitated/levitated/pkg/auth"
)

// This file is the route table: every HTTP route and gRPC method the
// server answers, declared once with the access it needs, the limit it
// counts against and the dialect of its errors. The mux, the security
// middleware, the metrics' handler label and the route table of
// docs/security.md are derived from it (route.go; TestRouteTableDocs).
// To add a route, add a row here (or, from outside the package, through
// Services.Routes); nothing else needs to know its path.

// grpcMethods are the gRPC methods served, by their generated names.
var grpcMethods = []GRPCMethod{
	{levitatedv1.EventService_CreateEvent_FullMethodName, eventsWrite},
	{levitatedv1.EventService_BatchCreateEvents_FullMethodName, eventsWrite},
	{levitatedv1.EventService_GetEvent_FullMethodName, readAccess},
	{levitatedv1.EventService_ListEvents_FullMethodName, readAccess},
	{levitatedv1.EventService_TailEvents_FullMethodName, readAccess},
	{levitatedv1.AnalysisService_Analyze_FullMethodName, analysisQuery},
	// Change intelligence (pkg/impact): as GET /api/v1/events/{id}/impact
	// and POST /api/v1/gates:evaluate.
	{levitatedv1.ImpactService_GetImpact_FullMethodName, readAccess},
	{levitatedv1.ImpactService_EvaluateGate_FullMethodName, analysisQuery},
	// Thanos' StoreAPI and Info API (storeapi.go).
	{storepb.Store_Series_FullMethodName, queryAccess},
	{storepb.Store_LabelNames_FullMethodName, queryAccess},
	{storepb.Store_LabelValues_FullMethodName, queryAccess},
	{infopb.Info_Info_FullMethodName, readAccess},
}

// prometheusPaths are the routes of Prometheus' web/api/v1 that
// levitated serves through it (v1.API.Register), and what they need.
// Paths under /api/v1/ not listed here still reach it (and answer 404)
// through the /api/v1/ row.
var prometheusPaths = []struct {
	path   string
	access Access
}{
	{"/api/v1/query", queryAccess},
	{"/api/v1/query_range", queryAccess},
	{"/api/v1/query_exemplars", queryAccess},
	{"/api/v1/series", queryAccess},
	{"/api/v1/labels", queryAccess},
	{"/api/v1/label/{name}/values", queryAccess},
	{"/api/v1/format_query", readAccess},
	{"/api/v1/parse_query", readAccess},
	{"/api/v1/read", readAccess},
	{"/api/v1/scrape_pools", readAccess},
	{"/api/v1/targets", readAccess},
	{"/api/v1/targets/metadata", readAccess},
	{"/api/v1/alertmanagers", readAccess},
	{"/api/v1/alerts", readAccess},
	{"/api/v1/rules", readAccess},
	{"/api/v1/status/config", readAccess},
	{"/api/v1/status/runtimeinfo", readAccess},
	{"/api/v1/status/buildinfo", readAccess},
	{"/api/v1/status/flags", readAccess},
	{"/api/v1/status/walreplay", readAccess},
	{"/api/v1/notifications", readAccess},
	{"/api/v1/features", readAccess},
	{"/api/v1/scrape_pools/config", readAccess},
	{"/api/v1/targets/relabel_steps", readAccess},
	{"/api/v1/status/tsdb/blocks", readAccess},
	{"/api/v1/status/self_metrics", readAccess},
	{"/api/v1/notifications/live", readAccess},
	{"/api/v1/openapi.yaml", readAccess},
	{"/api/v1/", readAccess},
	{"/api/v1/admin/", adminAccess},
}

// kayentaPaths are the paths of Kayenta's REST API, served at the root as
// Kayenta serves them, so that a client's Kayenta address is levitated's.
// The subtrees of /judges and /credentials (which Kayenta does not serve)
// are declared so that they need the same scope as their roots.
var kayentaPaths = []string{"/canaryConfig", "/canaryConfig/", "/canary", "/canary/", "/judges", "/judges/", "/credentials", "/credentials/", "/metricSetPairList/"}

// consolePaths are the pages and assets of the web console (pkg/console,
// docs/console.md), served for GET only, so that other paths keep their
// 404 and other methods their 405. They are public: they hold no data;
// what the console shows comes from the API with the signed-in token.
// /graph is the Prometheus UI's query page (its g0.expr deep links).
// The server refuses to start if the console serves a path not listed
// here, or does not serve one that is (consoleHandlers).
var consolePaths = []string{"/{$}", "/Editor.js", "/analyses", "/analyses/{id}", "/app.css", "/app.js", "/changes", "/changes/{id}", "/chunk.js", "/graph", "/query", "/signin", "/status", "/worker.js"}

// routes builds the handlers and declares every HTTP route.
func (s *Server) routes() ([]Route, error) {
	h, err := s.handlers()
	if err != nil {
		return nil, err
	}
	prom := DialectPrometheus
	rs := []Route{
		// Remote write; /api/v1/push is the path Mimir's tooling uses.
		{Pattern: "/api/v1/write", Access: writeAccess, Preflight: true, Dialect: prom, Handler: h.remoteWrite, Doc: "Prometheus remote write 1.0 and 2.0"},
		{Pattern: "/api/v1/push", Access: writeAccess, Preflight: true, Dialect: prom, Handler: h.remoteWrite, Doc: "remote write (Mimir's path)"},
		{Pattern: "/api/v1/otlp/v1/metrics", Access: writeAccess, Preflight: true, Dialect: prom, Handler: h.otlp, Doc: "OTLP metrics"},
		// Served from the store rather than Prometheus' scrape and head state.
		{Pattern: "GET /api/v1/metadata", Access: queryAccess, Preflight: true, Dialect: prom, Handler: serveAPI(s.metadata), Doc: "metric metadata"},
		{Pattern: "GET /api/v1/status/tsdb", Access: queryAccess, Preflight: true, Dialect: prom, Handler: serveAPI(s.tsdbStatus), Doc: "TSDB statistics"},
		{Pattern: "POST /api/v1/admin/flush", Access: adminAccess, Dialect: prom, Handler: serveAPI(s.flush), Doc: "flush the store (benchmarks)"},
		{Pattern: "POST /api/v1/admin/snapshot", Access: adminAccess, Dialect: prom, Handler: serveAPI(s.snapshot), Doc: "back up the running store to <data-dir>/snapshots/<name> (docs/operations.md)"},
		{Pattern: "POST /api/v1/admin/tsdb/snapshot", Access: adminAccess, Dialect: prom, Handler: serveAPI(s.snapshot), Doc: "the same, at Prometheus' path"},

		// Change events: the REST face of levitated.v1.EventService, Last9's
		// change-events API and Grafana's annotations.
		{Pattern: "GET /api/v1/events", Access: readAccess, Preflight: true, Dialect: prom, Handler: h.eventGateway, Doc: "list events"},
		{Pattern: "/api/v1/events", Access: eventsWrite, Preflight: true, Dialect: prom, Handler: h.eventGateway, Doc: "create an event (POST)"},
		{Pattern: "GET /api/v1/events:batch", Access: readAccess, Preflight: true, Dialect: prom, Handler: h.eventGateway, Doc: "(no such read; the gateway answers)"},
		{Pattern: "/api/v1/events:batch", Access: eventsWrite, Preflight: true, Dialect: prom, Handler: h.eventGateway, Doc: "create events (POST)"},
		{Pattern: "GET /api/v1/events/{id}/impact", Access: readAccess, Preflight: true, Dialect: prom, Handler: h.impact, Doc: "the impact verdict of a change"},
		{Pattern: "/api/v1/events/", Access: readAccess, Preflight: true, Dialect: prom, Handler: h.eventGateway, Doc: "get an event"},
		{Pattern: "/api/v1/events:tail", Access: readAccess, Preflight: true, Dialect: prom, Handler: h.eventGateway, Doc: "follow events"},
		{Pattern: "/api/v4/organizations/{org}/change_events", Access: eventsWrite, Dialect: prom, Handler: h.last9, Doc: "Last9 change events (PUT, POST)"},
		{Pattern: "POST /api/v4/oauth/access_token", Access: public, Dialect: prom, AlwaysReady: true, Handler: h.last9Token, Doc: "Last9 token exchange (echoes the token)"},
		{Pattern: "POST /api/annotations", Access: eventsWrite, Dialect: prom, Handler: h.annotations, Doc: "Grafana annotations"},

		// Canary analysis: the native API, Flagger's webhook, Kayenta's API.
		{Pattern: "POST /api/v1/analysis", Access: analysisQuery, Preflight: true, Dialect: prom, Handler: h.analysis, Doc: "native canary analysis"},
		{Pattern: "POST /api/v1/analysis:webhook", Access: analysisQuery, Preflight: true, Dialect: prom, Handler: h.webhook, Doc: "Flagger webhook"},
		{Pattern: "POST /api/v1/gates:evaluate", Access: analysisQuery, Preflight: true, Dialect: prom, Handler: h.gate, Doc: "gate on the impact of changes"},

		// The console's principal: tenant, subject and scopes of the token.
		{Pattern: "GET /api/v1/status/whoami", Access: readAccess, Preflight: true, Dialect: prom, Handler: h.whoami, Doc: "the request's tenant, subject and scopes (the console)"},

		{Pattern: "/-/healthy", Access: public, AlwaysReady: true, Handler: http.HandlerFunc(healthy), Doc: "liveness"},
		{Pattern: "/-/ready", Access: public, Handler: http.HandlerFunc(s.readyHandler), Doc: "readiness (503 until ready, or while the disk refuses writes)"},
		// Rules and the impact configuration: Prometheus' reload.
		{Pattern: "POST /-/reload", Access: adminAccess, Handler: h.reload, Doc: "reload the rule files and the impact configuration"},
		{Pattern: "PUT /-/reload", Access: adminAccess, Handler: h.reload, Doc: "reload the rule files and the impact configuration"},
		{Pattern: "GET /metrics", Access: adminAccess, AlwaysReady: true, Handler: promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{Registry: s.opts.Registry}), Doc: "the server's metrics"},
		// Go's profiler, as Prometheus serves it.
		{Pattern: "/debug/pprof/", Access: adminAccess, AlwaysReady: true, Handler: http.HandlerFunc(pprof.Index), Doc: "Go profiles"},
		{Pattern: "/debug/pprof/cmdline", Access: adminAccess, AlwaysReady: true, Handler: http.HandlerFunc(pprof.Cmdline)},
		{Pattern: "/debug/pprof/profile", Access: adminAccess, AlwaysReady: true, Handler: http.HandlerFunc(pprof.Profile)},
		{Pattern: "/debug/pprof/symbol", Access: adminAccess, AlwaysReady: true, Handler: http.HandlerFunc(pprof.Symbol)},
		{Pattern: "/debug/pprof/trace", Access: adminAccess, AlwaysReady: true, Handler: http.HandlerFunc(pprof.Trace)},
	}
	for _, p := range prometheusPaths {
		handler := h.prometheus
		switch p.path {
		// The query routes' gzip with pooled writers (compression.go), in
		// the methods Prometheus' API registers them with.
		// query and query_range at gzip's best speed, on all cores.
		case "/api/v1/query", "/api/v1/query_range":
			handler = withPooledGzip(handler, s.ready.Load, true, http.MethodGet, http.MethodPost)
		case "/api/v1/query_exemplars", "/api/v1/series", "/api/v1/labels":
			handler = withPooledGzip(handler, s.ready.Load, false, http.MethodGet, http.MethodPost)
		case "/api/v1/label/{name}/values":
			handler = withPooledGzip(handler, s.ready.Load, false, http.MethodGet)
		}
		if p.path == "/api/v1/query" || p.path == "/api/v1/query_range" {
			handler = withNoCache(withTemplates(handler, s.opts.Query.Limits())) // resultscache.go
		}
		if p.path == "/api/v1/read" {
			handler = localOnly(handler) // querystore.go
		}
		doc := "Prometheus API"
		switch p.path {
		case "/api/v1/":
			doc = "the rest of Prometheus' API (404)"
		case "/api/v1/admin/":
			doc = "Prometheus' TSDB admin API (turned off)"
		}
		// Prometheus' API checks readiness itself (v1.NewAPI's ready).
		rs = append(rs, Route{Pattern: p.path, Access: p.access, Preflight: p.access != adminAccess, Dialect: prom, AlwaysReady: true, Handler: handler, Doc: doc})
	}
	for _, p := range consolePaths {
		doc := "the web console's page"
		if path.Ext(p) != "" {
			doc = "the web console's bundle"
		}
		rs = append(rs, Route{Pattern: "GET " + p, Access: public, AlwaysReady: true, Handler: h.console, Doc: doc})
	}
	for _, p := range kayentaPaths {
		rs = append(rs, Route{Pattern: p, Access: kayentaAccess, Handler: h.kayenta, Doc: "Kayenta API"})
	}
	return rs, nil
}

func healthy(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "levitated is Healthy.\n")
}

// scopeOf reports a scope for documentation; "" for public.
func scopeOf(a Access) auth.Scope {
	if a.Public {
		return ""
	}
	return a.Scope
}
