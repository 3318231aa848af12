package tenant

import (
	"context"
	"fmt"
)

// IDs maps a tenant name to the numeric id a store keys the tenant's data
// by, registering the tenant on first use; pkg/storage.DB (its TenantID)
// is the one implementation. The packages that need it declare it where
// they consume it, in this shape, as TenantIDs.
type IDs interface {
	TenantID(ctx context.Context, name string) (uint32, error)
}

// IDFunc makes a function an IDs, as http.HandlerFunc does a handler:
// for a store of one tenant in tests and tools.
type IDFunc func(ctx context.Context, name string) (uint32, error)

// TenantID implements IDs.
func (f IDFunc) TenantID(ctx context.Context, name string) (uint32, error) { return f(ctx, name) }

// ID is how a request's tenant is found: the tenant ctx carries
// (FromContext), mapped by ids to the store's numeric id. The error names
// the tenant.
func ID(ctx context.Context, ids IDs) (uint32, error) {
	name := FromContext(ctx)
	id, err := ids.TenantID(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("resolve tenant %q: %w", name, err)
	}
	return id, nil
}
