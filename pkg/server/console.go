package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/console"
)

// consoleHandlers builds the web console (pkg/console), whose pages and
// assets the route table declares (consolePaths), and GET
// /api/v1/status/whoami: the principal of the request, which the console
// reads to show the tenant and to offer only what the token's scopes
// allow.
func (s *Server) consoleHandlers() (pages, whoami http.Handler, err error) {
	c, err := console.New()
	if err != nil {
		return nil, nil, err
	}
	// The table declares each path the console serves; a page or asset
	// added to the bundle without its row would answer 404.
	served := c.Paths()
	for _, p := range served {
		if !slices.Contains(consolePaths, p) {
			return nil, nil, fmt.Errorf("route table: the console serves %s, which consolePaths does not declare", p)
		}
	}
	for _, p := range consolePaths {
		if !slices.Contains(served, p) {
			return nil, nil, fmt.Errorf("route table: consolePaths declares %s, which the console does not serve", p)
		}
	}
	whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	})
	return c, whoami, nil
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
