package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/limits"
	"github.com/levitated/levitated/pkg/tenant"
	"github.com/levitated/levitated/pkg/webconfig"
	"github.com/levitated/levitated/pkg/yield"
)

// SecurityOptions configure authentication, tenancy and TLS
// (docs/security.md).
type SecurityOptions struct {
	// TokenFile holds the API tokens (pkg/auth). Default:
	// <DataDir>/tokens.json.
	TokenFile string
	// WebConfigFile is a Prometheus web configuration file (web.yml: TLS,
	// client certificates, bcrypt basic-auth users, headers); empty for
	// none.
	WebConfigFile string
	// TrustedProxy takes the tenant from the X-Scope-OrgID header (gRPC:
	// x-scope-orgid metadata) with every scope, as Mimir does behind an
	// authenticating gateway. Without it the header is ignored.
	TrustedProxy bool
	// InsecureAllowUnauthenticatedRemoteAccess lets the server listen on a
	// non-loopback address with no credential configured: then anyone who
	// can connect reads and writes the default tenant's data.
	InsecureAllowUnauthenticatedRemoteAccess bool
}

// InsecureFlag is the command-line flag that sets
// SecurityOptions.InsecureAllowUnauthenticatedRemoteAccess.
const InsecureFlag = "--auth.insecure-allow-unauthenticated-remote-access"

// security authenticates requests, sets their tenant and applies the
// request-level limits.
type security struct {
	opts    SecurityOptions
	authn   *auth.Authenticator
	web     *webconfig.File // nil without a web config
	limiter *limits.Limiter
	webRate *rate.Limiter // web.yml rate_limit; nil for none
	// queryTimeout is the engine's --query.timeout.
	queryTimeout time.Duration
	// table classifies requests (route.go).
	table *routeTable
	// ingest counts the write requests in flight, for the background work
	// that gives way to them (pkg/yield; the impact scheduler).
	ingest yield.Ingest
	// requireAuth is set when the server listens beyond loopback without
	// the insecure flag: every request then needs a credential, even if
	// the token file is emptied while the server runs.
	requireAuth bool
}

// newSecurity reads the web config and the token file and builds the
// limiter.
func (s *Server) newSecurity() (*security, error) {
	o := s.opts.Security
	if o.TokenFile == "" {
		o.TokenFile = filepath.Join(s.opts.DataDir, auth.TokenFileName)
	}
	sec := &security{opts: o, queryTimeout: s.opts.Query.Timeout}
	if o.WebConfigFile != "" {
		w, err := webconfig.Load(o.WebConfigFile)
		if err != nil {
			return nil, err
		}
		sec.web = w
		if interval, burst := w.RateLimit(); interval > 0 {
			sec.webRate = rate.NewLimiter(rate.Every(interval), burst)
		}
	}
	aopts := auth.Options{TokenFile: o.TokenFile, Logger: s.logger}
	if sec.web != nil {
		aopts.Users = sec.web.Users
	}
	authn, err := auth.NewAuthenticator(aopts)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	sec.authn = authn
	lopts := s.opts.Limits
	lopts.Registerer = s.opts.Registry
	lopts.Logger = s.logger
	if sec.limiter, err = limits.New(lopts); err != nil {
		return nil, err
	}
	return sec, nil
}

// checkListener refuses a non-loopback address when nothing
// authenticates, unless the insecure flag allows it.
func (sec *security) checkListener(l net.Listener, dataDir string, logger interface {
	Warn(string, ...any)
}) error {
	addr, ok := l.Addr().(*net.TCPAddr)
	if ok && addr.IP.IsLoopback() {
		return nil
	}
	sec.requireAuth = !sec.opts.InsecureAllowUnauthenticatedRemoteAccess
	if sec.authn.Enabled() || sec.opts.TrustedProxy || (sec.web != nil && sec.web.RequiresClientCerts()) {
		return nil
	}
	if sec.opts.InsecureAllowUnauthenticatedRemoteAccess {
		logger.Warn("INSECURE: serving without authentication on a non-loopback address; anyone who can connect reads and writes all data",
			"address", l.Addr().String(), "flag", InsecureFlag)
		return nil
	}
	return fmt.Errorf("refusing to listen on %s without authentication: no API token exists in %s. "+
		"Create one (levitated token create --data-dir %s --tenant NAME --scope read,write), "+
		"configure basic-auth users or required client certificates in --web.config.file, "+
		"listen on a loopback address (127.0.0.1:9090), or pass %s to let anyone who can connect read and write",
		l.Addr(), sec.opts.TokenFile, dataDir, InsecureFlag)
}

// tlsListener wraps l in TLS when the web config asks for it, and sets the
// server's TLS configuration. It offers h2 (gRPC) and http/1.1.
func (sec *security) tlsListener(l net.Listener, srv *http.Server) (net.Listener, error) {
	if sec.web == nil || !sec.web.TLSEnabled() {
		return l, nil
	}
	cfg, err := sec.web.TLSConfig([]string{"h2", "http/1.1"})
	if err != nil {
		return nil, err
	}
	srv.TLSConfig = cfg
	return tls.NewListener(l, cfg), nil
}

// authEnabled reports whether requests need a credential.
func (sec *security) authEnabled() bool { return sec.requireAuth || sec.authn.Enabled() }

// principal decides who a request acts for from its credential and, in
// trusted-proxy mode, its X-Scope-OrgID.
func (sec *security) principal(ctx context.Context, authorization, last9, orgID string) (auth.Principal, error) {
	if sec.opts.TrustedProxy && orgID != "" {
		if err := tenant.Validate(orgID); err != nil {
			return auth.Principal{}, fmt.Errorf("X-Scope-OrgID: %w", err)
		}
		if strings.Contains(orgID, "|") {
			return auth.Principal{}, errors.New("X-Scope-OrgID: queries across tenants (a|b) are not supported")
		}
		return auth.Principal{Tenant: orgID, Scopes: auth.AllScopes, Subject: "trusted proxy"}, nil
	}
	if !sec.authEnabled() {
		return auth.Principal{Tenant: tenant.Default, Scopes: auth.AllScopes, Subject: "anonymous"}, nil
	}
	v := authorization
	if v == "" {
		v = last9
	}
	cred, err := auth.ParseAuthorization(v)
	if err != nil {
		return auth.Principal{}, err
	}
	return sec.authn.Authenticate(ctx, cred)
}

func scopeError(p auth.Principal, need auth.Scope, what string) error {
	return fmt.Errorf("auth: %s of tenant %q lacks the %q scope that %s needs", p.Subject, p.Tenant, need, what)
}

// httpHandler authenticates every HTTP request but gRPC ones (the
// interceptors do those), puts its tenant in the context, and applies the
// request-level limits.
func (sec *security) httpHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sec.web != nil {
			for k, v := range sec.web.Headers() {
				w.Header().Set(k, v)
			}
		}
		if sec.webRate != nil && !sec.webRate.Allow() {
			writeError(w, DialectText, &statusError{http.StatusTooManyRequests, errors.New(http.StatusText(http.StatusTooManyRequests))})
			return
		}
		if isGRPC(r) {
			next.ServeHTTP(w, r)
			return
		}
		a, dialect := sec.table.httpAccess(r)
		if a.Public {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		p, err := sec.principal(ctx, r.Header.Get("Authorization"), r.Header.Get("X-Last9-Api-Token"), r.Header.Get("X-Scope-OrgID"))
		if err != nil {
			writeError(w, dialect, unauthenticated(err))
			return
		}
		if !p.Has(a.Scope) {
			writeError(w, dialect, forbidden(scopeError(p, a.Scope, r.Method+" "+r.URL.Path)))
			return
		}
		ctx = withPrincipal(tenant.NewContext(ctx, p.Tenant), p)
		ctx, done, err := sec.admit(ctx, a.Limit)
		if err != nil {
			writeError(w, dialect, err)
			return
		}
		defer done()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// admit applies a route's limit before it is served (pkg/limits): a
// write counts against the in-flight writes; a query gets its deadline
// and waits for a slot of its tenant. done ends what admit started.
func (sec *security) admit(ctx context.Context, limit Limit) (_ context.Context, done func(), err error) {
	switch limit {
	case LimitWrite:
		release, err := sec.limiter.StartWrite(ctx)
		if err != nil {
			return nil, nil, err
		}
		end := sec.ingest.Begin()
		return ctx, func() { end(); release() }, nil
	case LimitQuery:
		if ctx, done, err = sec.limiter.StartQuery(ctx, sec.queryTimeout); err != nil {
			return nil, nil, err
		}
		if set, ok := ctx.Value(writeDeadlineKey{}).(func(time.Time) error); ok {
			// A gRPC call: best effort, an HTTP/2 stream always has one.
			deadline, _ := ctx.Deadline()
			_ = set(deadline.Add(QueryWriteGrace))
		}
		return ctx, done, nil
	}
	return ctx, func() {}, nil
}

// QueryWriteGrace is how long past its deadline a gRPC query call may
// still write. A handler that is running sees its context end and answers
// DeadlineExceeded before that; one blocked in a write to a client that
// stopped reading (HTTP/2 flow control) cannot see its context, and has its
// stream reset at the end of the grace, which ends the write, the call and
// what it holds.
const QueryWriteGrace = time.Second

// writeDeadlineKey is the context key of the gRPC request's
// http.ResponseController.SetWriteDeadline (Server.handler).
type writeDeadlineKey struct{}

func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// grpcOptions are the interceptors that authenticate gRPC calls, followed
// by the caller's options.
func (sec *security) grpcOptions(extra []grpc.ServerOption) []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(sec.unary),
		grpc.ChainStreamInterceptor(sec.stream),
	}, extra...)
}

func (sec *security) grpcContext(ctx context.Context, fullMethod string) (context.Context, func(), error) {
	a := sec.table.grpcAccess(fullMethod)
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p, err := sec.principal(ctx, first("authorization"), first("x-last9-api-token"), first("x-scope-orgid"))
	if err != nil {
		return nil, nil, unauthenticated(err)
	}
	if !p.Has(a.Scope) {
		return nil, nil, forbidden(scopeError(p, a.Scope, fullMethod))
	}
	ctx, done, err := sec.admit(tenant.NewContext(ctx, p.Tenant), a.Limit)
	if err != nil {
		return nil, nil, err // *limits.Error carries its gRPC status
	}
	return ctx, done, nil
}

func (sec *security) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, release, err := sec.grpcContext(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	defer release()
	return handler(ctx, req)
}

func (sec *security) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, release, err := sec.grpcContext(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer release()
	return handler(srv, &tenantStream{ServerStream: ss, ctx: ctx})
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tenantStream) Context() context.Context { return s.ctx }
