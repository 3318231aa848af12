package server

import (
	"context"
	"net/http"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/console"
)

// mountConsole serves the web console (pkg/console) at / (GET of its
// pages and assets only, so other paths keep their 404 and 405) and the
// principal of a request at GET /api/v1/status/whoami, which the console
// reads to show the tenant and to offer only what the token's scopes allow.
// The console's pages and assets are public (httpAccess); the data it
// shows comes from the API with the signed-in token.
func (s *Server) mountConsole(handle func(string, http.Handler)) error {
	c, err := console.New()
	if err != nil {
		return err
	}
	for _, p := range c.Paths() {
		handle("GET "+p, c)
	}
	handle("GET /api/v1/status/whoami", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := principalFrom(r.Context())
		scopes := make([]string, 0, len(p.Scopes))
		for _, sc := range p.Scopes {
			scopes = append(scopes, string(sc))
		}
		respond(w, map[string]any{
			"tenant":        p.Tenant,
			"subject":       p.Subject,
			"scopes":        scopes,
			"auth_required": s.sec.authEnabled(),
			"version":       s.opts.Version,
		})
	}))
	return nil
}

type principalKey struct{}

// withPrincipal records who a request acts for (security.httpHandler).
func withPrincipal(ctx context.Context, p auth.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(auth.Principal)
	return p, ok
}
