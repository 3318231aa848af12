// Package tenant carries the tenant a request acts for through a
// context.Context. The tenant is set by the server's authentication layer
// (from the token, or from X-Scope-OrgID in trusted-proxy mode) and read by
// every storage and query path; nothing else may choose it. ID is the one
// way a request's tenant is mapped to the numeric id a store keys it by
// (pkg/storage.DB implements IDs); the packages that need that declare
// IDs where they consume it, as TenantIDs, and call ID.
package tenant

import (
	"context"
	"fmt"
	"unicode/utf8"
)

// Default is the tenant used when authentication is disabled, as in Mimir.
const Default = "anonymous"

// MaxLength is the longest tenant name accepted.
const MaxLength = 150

type ctxKey struct{}

// NewContext returns a copy of ctx that carries the tenant id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the tenant carried by ctx, or Default if there is none.
func FromContext(ctx context.Context) string {
	if id, ok := ctx.Value(ctxKey{}).(string); ok && id != "" {
		return id
	}
	return Default
}

// Validate reports whether id can name a tenant: 1 to MaxLength bytes of
// valid UTF-8 without control characters or '/'.
func Validate(id string) error {
	if id == "" {
		return fmt.Errorf("tenant: empty id")
	}
	if len(id) > MaxLength {
		return fmt.Errorf("tenant: id longer than %d bytes", MaxLength)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("tenant: id is not valid UTF-8")
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == '/' {
			return fmt.Errorf("tenant: id contains %q", r)
		}
	}
	return nil
}
