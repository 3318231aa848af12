package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Scope is something a token may do.
type Scope string

// The scopes. Each is independent: admin does not imply the others.
const (
	// ScopeRead reads samples, series, labels, metadata, exemplars, TSDB
	// status and change events (PromQL, the Prometheus API, event
	// list/get/tail).
	ScopeRead Scope = "read"
	// ScopeWrite writes samples (remote write 1.0 and 2.0, OTLP).
	ScopeWrite Scope = "write"
	// ScopeEventsWrite writes change events (native API, Last9, Grafana
	// annotations).
	ScopeEventsWrite Scope = "events:write"
	// ScopeAnalysis runs canary analyses (native API and Kayenta's API).
	ScopeAnalysis Scope = "analysis"
	// ScopeAdmin reads the server's own metrics and profiles and flushes
	// the store.
	ScopeAdmin Scope = "admin"
)

// AllScopes lists every scope, in the order they are documented.
var AllScopes = []Scope{ScopeRead, ScopeWrite, ScopeEventsWrite, ScopeAnalysis, ScopeAdmin}

// ParseScopes reads a comma-separated list of scopes ("read,write"),
// dropping duplicates; "all" stands for every scope.
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if part == "all" {
			return slices.Clone(AllScopes), nil
		}
		sc := Scope(part)
		if !slices.Contains(AllScopes, sc) {
			return nil, fmt.Errorf("auth: unknown scope %q (known: %s)", part, joinScopes(AllScopes))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("auth: no scope given (known: %s)", joinScopes(AllScopes))
	}
	slices.SortFunc(out, func(a, b Scope) int { return slices.Index(AllScopes, a) - slices.Index(AllScopes, b) })
	return out, nil
}

func joinScopes(ss []Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

// Principal is who a request acts for.
type Principal struct {
	// Tenant is the tenant whose data the request reads and writes.
	Tenant string
	// Scopes are what the request may do.
	Scopes []Scope
	// Subject names the credential for logs and errors, never the secret:
	// "token <id>", "user <name>", "trusted proxy" or "anonymous".
	Subject string
}

// Has reports whether p may do s.
func (p Principal) Has(s Scope) bool { return slices.Contains(p.Scopes, s) }
