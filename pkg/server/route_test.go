package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/auth"
)

// newTestServer builds a server on 127.0.0.1:0 in a temporary directory,
// without serving; it is shut down by t.Cleanup.
func newTestServer(t *testing.T) *Server {
	t.Helper()
	o := DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = t.TempDir()
	o.Registry = prometheus.NewRegistry()
	s, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.NoError(t, s.Run(ctx))
	})
	return s
}

// sampleRequest is a request the route's pattern matches: wildcards
// filled in, the pattern's method (for any method, PATCH, which no route
// names).
func sampleRequest(r Route) *http.Request {
	method, p := r.split()
	if method == "" {
		method = http.MethodPatch
	}
	p = wildcard.ReplaceAllString(strings.ReplaceAll(p, "{$}", ""), "x")
	return httptest.NewRequest(method, p, nil)
}

// TestRouteTableMountsEveryRoute: the mux sends a request of each route's
// pattern to that route, the classifier picks that same route, and no two
// routes share a pattern or a metrics name they should not; every gRPC
// method of levitated's services is declared.
func TestRouteTableMountsEveryRoute(t *testing.T) {
	s := newTestServer(t)
	require.Greater(t, len(s.table.routes), 40)
	names := map[string]string{}
	for i := range s.table.routes {
		r := &s.table.routes[i]
		req := sampleRequest(*r)
		_, pattern := s.table.mux.Handler(req)
		require.Equal(t, r.Pattern, pattern, "the mux sends %s %s elsewhere", req.Method, req.URL.Path)
		require.Same(t, r, s.table.route(req), "%s %s is classified by another route", req.Method, req.URL.Path)
		_, p := r.split()
		if prev, ok := names[r.Name()]; ok {
			_, pp := (&Route{Pattern: prev}).split()
			require.Equal(t, pp, p, "routes %s and %s share the handler label %s", prev, r.Pattern, r.Name())
		}
		names[r.Name()] = r.Pattern
		require.NotContains(t, r.Name(), "{")
	}

	// Every method of levitated.v1's services has a row.
	var served []string
	for svc, info := range s.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			served = append(served, "/"+svc+"/"+m.Name)
		}
	}
	require.NotEmpty(t, served)
	for _, m := range served {
		if strings.HasPrefix(m, "/levitated.") {
			_, ok := s.table.grpc[m]
			require.True(t, ok, "gRPC method %s has no row in grpcMethods", m)
		}
	}
	for _, m := range grpcMethods {
		require.Contains(t, served, m.FullMethod, "grpcMethods declares %s, which is not served", m.FullMethod)
	}
}

// TestRouteTableRejectsClashes: a pattern declared twice is an error, not
// a panic or a silently shadowed route.
func TestRouteTableRejectsClashes(t *testing.T) {
	h := http.NotFoundHandler()
	wrap := func(r *Route) http.Handler { return r.Handler }
	_, err := newRouteTable([]Route{{Pattern: "/a", Handler: h}, {Pattern: "/a", Handler: h}}, nil, wrap)
	require.ErrorContains(t, err, "route table")
	_, err = newRouteTable([]Route{{Pattern: "/a"}}, nil, wrap)
	require.ErrorContains(t, err, "no handler")
	_, err = newRouteTable(nil, []GRPCMethod{{FullMethod: "/a/B"}, {FullMethod: "/a/B"}}, wrap)
	require.ErrorContains(t, err, "declared twice")
}

// legacyAccess is the classification by path the route table replaced
// (security.go before issue 14), kept as the oracle of
// TestRouteAccessUnchanged.
func legacyAccess(method, p string) Access {
	clean := path.Clean(p)
	if clean != p && !(strings.HasSuffix(p, "/") && clean+"/" == p) {
		return adminAccess
	}
	queryPaths := map[string]bool{
		"/api/v1/query": true, "/api/v1/query_range": true, "/api/v1/series": true, "/api/v1/labels": true,
		"/api/v1/query_exemplars": true, "/api/v1/metadata": true, "/api/v1/status/tsdb": true,
	}
	switch {
	case p == "/-/healthy" || p == "/-/ready":
		return public
	case isConsolePath(p):
		// Issue 16: the console's pages and assets (any method: the mux
		// answers 405 but for GET and HEAD).
		return public
	case method == http.MethodOptions && strings.HasPrefix(p, "/api/v1/") && !strings.HasPrefix(p, "/api/v1/admin/"):
		return public
	case p == "/api/v4/oauth/access_token":
		return public
	case p == "/api/v1/write" || p == "/api/v1/push" || p == "/api/v1/otlp/v1/metrics":
		return writeAccess
	case p == "/api/v1/events" || p == "/api/v1/events:batch":
		if method == http.MethodGet || method == http.MethodHead {
			return readAccess
		}
		return eventsWrite
	case strings.HasPrefix(p, "/api/v1/events/") || p == "/api/v1/events:tail":
		return readAccess
	case strings.HasPrefix(p, "/api/v4/organizations/") && strings.HasSuffix(p, "/change_events"),
		p == "/api/annotations":
		return eventsWrite
	case p == "/api/v1/analysis" || p == "/api/v1/analysis:webhook" || p == "/api/v1/gates:evaluate":
		return analysisQuery
	case p == "/metrics" || strings.HasPrefix(p, "/debug/pprof/") || strings.HasPrefix(p, "/api/v1/admin/"):
		return adminAccess
	case queryPaths[p] || (strings.HasPrefix(p, "/api/v1/label/") && strings.HasSuffix(p, "/values")):
		return queryAccess
	case strings.HasPrefix(p, "/api/v1/"):
		return readAccess
	}
	for _, root := range []string{"/canaryConfig", "/canary", "/judges", "/credentials", "/metricSetPairList"} {
		if p == root || strings.HasPrefix(p, root+"/") {
			return kayentaAccess
		}
	}
	return adminAccess
}

// isConsolePath: the console's pages, its pages with an id, its bundle.
func isConsolePath(p string) bool {
	switch p {
	case "/", "/graph", "/query", "/changes", "/analyses", "/status", "/signin", "/app.js", "/app.css", "/chunk.js", "/Editor.js", "/worker.js":
		return true
	}
	for _, pre := range []string{"/changes/", "/analyses/"} {
		if rest, ok := strings.CutPrefix(p, pre); ok && rest != "" && !strings.Contains(rest, "/") {
			return true
		}
	}
	return false
}

// TestRouteAccessUnchanged: every route, with every method, and the paths
// between and beyond them, need what they needed before the route table.
func TestRouteAccessUnchanged(t *testing.T) {
	s := newTestServer(t)
	paths := []string{
		"/", "/no/such/path", "/api/v1/../metrics", "//metrics", "/api/v1//query", "/api/v1/nonexistent",
		"/api/v1/admin/tsdb/snapshot", "/api/v1/status/tsdb/blocks", "/api/v1/label/job/values",
		"/metricSetPairList", "/metricSetPairList/abc", "/canaryConfig/abc", "/canary/executions", "/judges/x",
		"/credentials/x", "/api/v1/events/abc", "/api/v1/events/abc/def", "/api/v4/organizations/acme/change_events",
		"/api/v4/organizations/acme/other", "/api/annotations/1", "/debug/pprof/heap", "/metrics/x", "/api/v2/query",
		"/api/v1/analysis/x", "/-/healthy/x",
		"/changes/x/y", "/analyses/", "/index.html", "/app.js/x", "/graph/x", "/api/v1/status/whoami/x",
	}
	for _, r := range s.table.routes {
		paths = append(paths, sampleRequest(r).URL.Path)
	}
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch}
	for _, p := range paths {
		for _, m := range methods {
			req := httptest.NewRequest(m, "http://localhost/", nil)
			req.URL.Path = p
			got, _ := s.table.httpAccess(req)
			require.Equal(t, legacyAccess(m, p), got, "%s %s", m, p)
		}
	}
}

const (
	docsBegin = "<!-- route table: generated by TestRouteTableDocs; LEVITATED_UPDATE_DOCS=1 rewrites it -->"
	docsEnd   = "<!-- end of route table -->"
)

// routeTableDocs renders the route table as docs/security.md shows it.
func routeTableDocs(t *routeTable) string {
	var b strings.Builder
	b.WriteString(docsBegin + "\n\n")
	b.WriteString("| route | scope | limit | errors | what |\n|---|---|---|---|---|\n")
	for _, r := range t.routes {
		who := r.Access.Who()
		if r.Preflight {
			who += " (`OPTIONS`: none)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.Pattern, who, r.Access.Limit, r.Dialect, r.Doc)
	}
	fmt.Fprintf(&b, "| any other path | %s | | Prometheus JSON under `/api/`, else text | |\n", unlisted.Who())
	b.WriteString("\n| gRPC method | scope | limit |\n|---|---|---|\n")
	for _, m := range grpcMethods {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", m.FullMethod, m.Access.Who(), m.Access.Limit)
	}
	fmt.Fprintf(&b, "| any other method | %s | |\n", unlisted.Who())
	b.WriteString("\n" + docsEnd)
	return b.String()
}

// TestRouteTableDocs fails when docs/security.md's route table and the
// route table disagree. LEVITATED_UPDATE_DOCS=1 rewrites the docs.
func TestRouteTableDocs(t *testing.T) {
	s := newTestServer(t)
	const file = "../../docs/security.md"
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	doc := string(b)
	i, j := strings.Index(doc, docsBegin), strings.Index(doc, docsEnd)
	require.True(t, i >= 0 && j > i, "docs/security.md has no route table between %q and %q", docsBegin, docsEnd)
	want := routeTableDocs(s.table)
	if got := doc[i : j+len(docsEnd)]; got != want {
		if os.Getenv("LEVITATED_UPDATE_DOCS") == "1" {
			require.NoError(t, os.WriteFile(file, []byte(doc[:i]+want+doc[j+len(docsEnd):]), 0o644))
			return
		}
		t.Fatalf("docs/security.md's route table differs from the route table; run with LEVITATED_UPDATE_DOCS=1. Want:\n%s", want)
	}
	// Every scope the table uses is documented in the scope table.
	for _, r := range s.table.routes {
		if !r.Access.Public {
			require.True(t, slices.Contains(auth.AllScopes, r.Access.Scope), r.Pattern)
			require.Contains(t, doc[:i], "| `"+string(r.Access.Scope)+"` |")
		}
	}
}
