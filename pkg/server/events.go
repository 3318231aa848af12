package server

import (
	"context"
	"time"

	promstorage "github.com/prometheus/prometheus/storage"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/remotestore"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
)

// queryable is what PromQL and the HTTP API read: the store's series merged
// with the series computed from change events (last9_change_events,
// change_event_active, change_event_window_*) and with the series of the
// remote StoreAPI endpoints (--query.store, querystore.go), each for the
// tenant of the call's context. A series both hold is merged by Prometheus'
// chained series merge: a sample at the same timestamp counts once. The
// chunks (ChunkQuerier: the StoreAPI, remote read) are this store's only.
type queryable struct {
	db     *storage.DB
	events *eventstore.Store
	remote *remotestore.Store // nil without --query.store
}

func (q queryable) Querier(mint, maxt int64) (promstorage.Querier, error) {
	tq, err := q.db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	qs := []promstorage.Querier{tq, q.events.ContextQuerier(q.db, mint, maxt)}
	if q.remote != nil {
		// A primary: its Select never fails but when the query's context
		// ends; a failing endpoint is a warning (pkg/remotestore).
		rq, err := q.remote.Querier(mint, maxt)
		if err != nil {
			_ = tq.Close()
			return nil, err
		}
		qs = append(qs, rq)
	}
	merged := promstorage.NewMergeQuerier(qs, nil, promstorage.ChainedSeriesMerge)
	return levpromql.NarrowingQuerier(merged), nil
}

func (q queryable) ChunkQuerier(mint, maxt int64) (promstorage.ChunkQuerier, error) {
	return q.chunkQuerier(mint, maxt) // storeapi.go
}

// eventRetention deletes expired events every 10 minutes until ctx ends;
// a failed pass is logged and tried again at the next.
func (s *Server) eventRetention(ctx context.Context) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if err := s.events.EnforceRetention(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.logger.Error("event retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
