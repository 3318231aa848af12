package server

import (
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/levitated/levitated/pkg/auth"
)

// This file holds the types of the route table (table.go) and what is
// derived from it: the mux, the access classification the security
// middleware applies, and the metrics' handler label. A route reaches the
// mux only through Route (as Mimir's RegisterRoute), so that neither its
// authentication nor its limits can be forgotten.

// Limit is the request-level limit a route counts against.
type Limit int

const (
	// LimitNone: no request-level limit.
	LimitNone Limit = iota
	// LimitQuery: counted against the tenant's concurrent queries and
	// bounded by its query timeout.
	LimitQuery
	// LimitWrite: counted against the server's in-flight writes.
	LimitWrite
)

func (l Limit) String() string {
	switch l {
	case LimitQuery:
		return "query"
	case LimitWrite:
		return "write"
	}
	return ""
}

// Access is what a request needs: no credential (Public), or a credential
// with Scope; and the limit it counts against.
type Access struct {
	Public bool
	Scope  auth.Scope
	Limit  Limit
}

// Who says who may call in the words of docs/security.md.
func (a Access) Who() string {
	if a.Public {
		return "none"
	}
	return string(a.Scope)
}

// Common accesses.
var (
	public        = Access{Public: true}
	readAccess    = Access{Scope: auth.ScopeRead}
	queryAccess   = Access{Scope: auth.ScopeRead, Limit: LimitQuery}
	writeAccess   = Access{Scope: auth.ScopeWrite, Limit: LimitWrite}
	eventsWrite   = Access{Scope: auth.ScopeEventsWrite, Limit: LimitWrite}
	analysisQuery = Access{Scope: auth.ScopeAnalysis, Limit: LimitQuery}
	kayentaAccess = Access{Scope: auth.ScopeAnalysis}
	adminAccess   = Access{Scope: auth.ScopeAdmin}
)

// unlisted is the access of a request no route declares (and of a path
// that is not in its clean form): admin, so that a route added outside
// the table is closed.
var unlisted = Access{Scope: auth.ScopeAdmin}

// Route is one HTTP route.
type Route struct {
	// Pattern is a net/http.ServeMux pattern ("POST /api/v1/admin/flush",
	// "/api/v1/label/{name}/values"). Patterns with the same path and
	// different methods may carry different access (GET /api/v1/events
	// reads, any other method writes).
	Pattern string
	Access  Access
	// Preflight: a CORS preflight (OPTIONS) of this route needs no
	// credential (Prometheus' API answers it with its CORS headers and
	// no data).
	Preflight bool
	// Dialect words the errors the edge answers for this route
	// (authentication, scope, limits); see errors.go.
	Dialect Dialect
	// AlwaysReady serves the route while the server is not (yet, or no
	// longer) ready; other routes answer 503 then, as Prometheus does.
	AlwaysReady bool
	Handler     http.Handler
	// Doc describes the route in docs/security.md's route table.
	Doc string
}

// method and path of the pattern ("" for any method).
func (r Route) split() (method, p string) {
	if m, rest, ok := strings.Cut(r.Pattern, " "); ok {
		return m, strings.TrimSpace(rest)
	}
	return "", r.Pattern
}

var wildcard = regexp.MustCompile(`\{([^}.]+)(\.\.\.)?\}`)

// Name is the route's handler label in levitated_http_requests_total:
// its path, with wildcards written :name.
func (r Route) Name() string {
	_, p := r.split()
	// "/{$}" matches the path "/" only.
	p = strings.ReplaceAll(p, "{$}", "")
	return wildcard.ReplaceAllString(p, ":$1")
}

// GRPCMethod is one gRPC method and what it needs; FullMethod is the
// generated *_FullMethodName constant.
type GRPCMethod struct {
	FullMethod string
	Access     Access
}

// routeTable is the table after mounting: the mux, and the classifier
// the security middleware asks before the mux runs.
type routeTable struct {
	routes []Route
	grpc   map[string]Access
	mux    *http.ServeMux
	// byPath matches a request's path (with the mux's pattern rules) to
	// the routes of that path pattern.
	byPath *http.ServeMux
}

// pathRoutes are the routes sharing one path pattern.
type pathRoutes []*Route

func (pathRoutes) ServeHTTP(http.ResponseWriter, *http.Request) {}

// newRouteTable mounts routes on a new mux, each wrapped by wrap, and
// indexes them for classification. A pattern declared twice or clashing
// with another is an error.
func newRouteTable(routes []Route, methods []GRPCMethod, wrap func(*Route) http.Handler) (t *routeTable, err error) {
	t = &routeTable{routes: routes, grpc: map[string]Access{}, mux: http.NewServeMux(), byPath: http.NewServeMux()}
	for _, m := range methods {
		if _, dup := t.grpc[m.FullMethod]; dup {
			return nil, fmt.Errorf("route table: gRPC method %s declared twice", m.FullMethod)
		}
		t.grpc[m.FullMethod] = m.Access
	}
	defer func() {
		// ServeMux panics on a pattern that is invalid or clashes.
		if r := recover(); r != nil {
			err = fmt.Errorf("route table: %v", r)
		}
	}()
	paths := map[string]pathRoutes{}
	var order []string
	for i := range t.routes {
		r := &t.routes[i]
		if r.Handler == nil {
			return nil, fmt.Errorf("route table: %s has no handler", r.Pattern)
		}
		t.mux.Handle(r.Pattern, wrap(r))
		_, p := r.split()
		if _, ok := paths[p]; !ok {
			order = append(order, p)
		}
		paths[p] = append(paths[p], r)
	}
	for _, p := range order {
		t.byPath.Handle(p, paths[p])
	}
	return t, nil
}

// route is the route that serves a request, or nil if none does.
func (t *routeTable) route(r *http.Request) *Route {
	p := r.URL.Path
	if clean := path.Clean(p); clean != p && !(strings.HasSuffix(p, "/") && clean+"/" == p) {
		return nil
	}
	h, _ := t.byPath.Handler(&http.Request{Method: http.MethodGet, URL: r.URL, Host: r.Host})
	rs, ok := h.(pathRoutes)
	if !ok && !strings.HasSuffix(p, "/") {
		// The mux redirects /x to the subtree /x/.
		u := *r.URL
		u.Path = p + "/"
		h, pattern := t.byPath.Handler(&http.Request{Method: http.MethodGet, URL: &u, Host: r.Host})
		if rs, ok = h.(pathRoutes); ok && pattern != u.Path {
			ok = false
		}
	}
	if !ok {
		return nil
	}
	// The route of the request's method; else the one for any method;
	// else the first (the mux answers 405).
	var anyMethod *Route
	for _, rt := range rs {
		switch m, _ := rt.split(); {
		case m == r.Method, m == http.MethodGet && r.Method == http.MethodHead:
			return rt
		case m == "":
			anyMethod = rt
		}
	}
	if anyMethod != nil {
		return anyMethod
	}
	return rs[0]
}

// httpAccess is what a request needs, and the dialect of its errors.
func (t *routeTable) httpAccess(r *http.Request) (Access, Dialect) {
	rt := t.route(r)
	if rt == nil {
		return unlisted, dialectOfPath(r.URL.Path)
	}
	if r.Method == http.MethodOptions && rt.Preflight {
		return public, rt.Dialect
	}
	return rt.Access, rt.Dialect
}

// grpcAccess is what a gRPC method needs; unlisted methods need admin.
func (t *routeTable) grpcAccess(fullMethod string) Access {
	if a, ok := t.grpc[fullMethod]; ok {
		return a
	}
	return unlisted
}
