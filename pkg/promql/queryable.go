package promql

import (
	"github.com/prometheus/prometheus/storage"
)

// NewQueryable returns what levitated's engine reads: the series of samples
// merged with the series computed from change events (events: the event
// store's last9_change_events, change_event_active and
// change_event_window_*) and with those of any more (the remote StoreAPI
// endpoints of --query.store), each for the tenant of the call's context.
// A series that several hold is merged by Prometheus' chained series
// merge: a sample at the same timestamp counts once. Every Querier is
// behind NarrowingQuerier, so that an event-window function reads its range
// argument only as far back as its windows need.
//
// The server, the tests and the benchmarks all build their queryable here,
// so that each reads what a query on the server reads.
func NewQueryable(samples, events storage.Queryable, more ...storage.Queryable) storage.Queryable {
	qs := append([]storage.Queryable{samples, events}, more...)
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		queriers := make([]storage.Querier, 0, len(qs))
		for _, q := range qs {
			qr, err := q.Querier(mint, maxt)
			if err != nil {
				for _, open := range queriers {
					_ = open.Close()
				}
				return nil, err
			}
			queriers = append(queriers, qr)
		}
		return NarrowingQuerier(storage.NewMergeQuerier(queriers, nil, storage.ChainedSeriesMerge)), nil
	})
}
