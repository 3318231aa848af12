package tenant_test

import (
	"context"
	"errors"
	"testing"

	"github.com/levitated/levitated/pkg/tenant"
)

// TestID maps the context's tenant (Default when none) through the ids,
// and names the tenant when the ids fail.
func TestID(t *testing.T) {
	ids := tenant.IDFunc(func(_ context.Context, name string) (uint32, error) {
		switch name {
		case tenant.Default:
			return 1, nil
		case "team-a":
			return 7, nil
		}
		return 0, errors.New("ids exhausted")
	})
	if id, err := tenant.ID(context.Background(), ids); err != nil || id != 1 {
		t.Fatalf("no tenant: %d, %v; want the default's 1", id, err)
	}
	if id, err := tenant.ID(tenant.NewContext(context.Background(), "team-a"), ids); err != nil || id != 7 {
		t.Fatalf("team-a: %d, %v; want 7", id, err)
	}
	_, err := tenant.ID(tenant.NewContext(context.Background(), "team-b"), ids)
	if err == nil || err.Error() != `resolve tenant "team-b": ids exhausted` {
		t.Fatalf("team-b: %v", err)
	}
}
