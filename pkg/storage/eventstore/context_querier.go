package eventstore

import (
	"context"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/levitated/levitated/pkg/tenant"
)

// TenantIDs maps a tenant name to the numeric id the store keys by
// (pkg/tenant.IDs; *storage.DB).
type TenantIDs interface {
	TenantID(ctx context.Context, name string) (uint32, error)
}

// ContextQuerier returns a storage.Querier over [mint, maxt] that serves the
// tenant named in the context of each call (tenant.FromContext), resolved
// by tenants, as pkg/storage's querier does. Use it where the querier is
// made before the tenant is known, as in storage.Queryable.Querier.
func (s *Store) ContextQuerier(tenants TenantIDs, mint, maxt int64) storage.Querier {
	return &contextQuerier{s: s, tenants: tenants, mint: mint, maxt: maxt}
}

// Queryable is ContextQuerier as a storage.Queryable: the change-event
// series of the tenant of each call's context, for merging with the
// samples (pkg/promql's NewQueryable).
func (s *Store) Queryable(tenants TenantIDs) storage.Queryable {
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		return s.ContextQuerier(tenants, mint, maxt), nil
	})
}

type contextQuerier struct {
	s          *Store
	tenants    TenantIDs
	mint, maxt int64
}

func (q *contextQuerier) querier(ctx context.Context) (storage.Querier, error) {
	id, err := tenant.ID(ctx, q.tenants)
	if err != nil {
		return nil, err
	}
	return q.s.Querier(id, q.mint, q.maxt), nil
}

func (q *contextQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	tq, err := q.querier(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return tq.Select(ctx, sortSeries, hints, ms...)
}

func (q *contextQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	tq, err := q.querier(ctx)
	if err != nil {
		return nil, nil, err
	}
	return tq.LabelValues(ctx, name, hints, ms...)
}

func (q *contextQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	tq, err := q.querier(ctx)
	if err != nil {
		return nil, nil, err
	}
	return tq.LabelNames(ctx, hints, ms...)
}

func (q *contextQuerier) Close() error { return nil }
