package server

import (
	"context"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/remotestore"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
)

// queryable is what PromQL and the HTTP API read: the store's series merged
// with the series computed from change events (last9_change_events,
// change_event_active, change_event_window_*) and with the series of the
// remote StoreAPI endpoints (--query.store, querystore.go), each for the
// tenant of the call's context, as pkg/promql's NewQueryable merges them.
// The chunks (ChunkQuerier: the StoreAPI, remote read) are this store's
// only.
type queryable struct {
	promstorage.Queryable // levpromql.NewQueryable of the three
	db                    *storage.DB
	events                *eventstore.Store
	remote                *remotestore.Store // nil without --query.store
}

func newQueryable(db *storage.DB, events *eventstore.Store, remote *remotestore.Store) queryable {
	q := queryable{db: db, events: events, remote: remote}
	if remote == nil {
		q.Queryable = levpromql.NewQueryable(db, events.Queryable(db))
		return q
	}
	// A primary: its Select never fails but when the query's context ends;
	// a failing endpoint is a warning (pkg/remotestore), which the sets
	// have before they are first read.
	merged := levpromql.NewQueryable(db, events.Queryable(db), remote)
	q.Queryable = promstorage.QueryableFunc(func(mint, maxt int64) (promstorage.Querier, error) {
		mq, err := merged.Querier(mint, maxt)
		if err != nil {
			return nil, err
		}
		return warningsFirstQuerier{mq}, nil
	})
	return q
}

// warningsFirstQuerier's series sets have their warnings (an endpoint of
// --query.store that failed) before they are first read: Prometheus'
// /api/v1/series reads the warnings of its set before its series, when a
// merged set, which selects when first read, has none yet.
type warningsFirstQuerier struct{ promstorage.Querier }

func (q warningsFirstQuerier) Select(ctx context.Context, sortSeries bool, hints *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.SeriesSet {
	return &warningsFirstSet{SeriesSet: q.Querier.Select(ctx, sortSeries, hints, ms...)}
}

// warningsFirstSet reads its first series when asked for its warnings
// before any, and gives it on the first Next.
type warningsFirstSet struct {
	promstorage.SeriesSet
	started bool // Next was called, by the caller or by Warnings
	peeked  bool // a first Next's answer is waiting for the caller's
	first   bool
}

func (s *warningsFirstSet) Next() bool {
	if s.peeked {
		s.peeked = false
		return s.first
	}
	s.started = true
	return s.SeriesSet.Next()
}

func (s *warningsFirstSet) Warnings() annotations.Annotations {
	if !s.started {
		s.started, s.peeked = true, true
		s.first = s.SeriesSet.Next()
	}
	return s.SeriesSet.Warnings()
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
