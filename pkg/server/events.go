package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	promstorage "github.com/prometheus/prometheus/storage"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/ingest"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
)

// queryable is what PromQL and the HTTP API read: the store's series merged
// with the series computed from change events (last9_change_events,
// change_event_active, change_event_window_*), each for the tenant of the
// call's context.
type queryable struct {
	db     *storage.DB
	events *eventstore.Store
}

func (q queryable) Querier(mint, maxt int64) (promstorage.Querier, error) {
	tq, err := q.db.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	eq := q.events.ContextQuerier(q.db.TenantID, mint, maxt)
	merged := promstorage.NewMergeQuerier([]promstorage.Querier{tq, eq}, nil, promstorage.ChainedSeriesMerge)
	return levpromql.NarrowingQuerier(merged), nil
}

func (q queryable) ChunkQuerier(mint, maxt int64) (promstorage.ChunkQuerier, error) {
	return q.chunkQuerier(mint, maxt) // storeapi.go
}

// mountEvents serves the change-event APIs: gRPC levitated.v1.EventService,
// its REST face, Last9's change-events API and Grafana's annotation API.
func (s *Server) mountEvents(handle func(string, http.Handler)) error {
	svc := ingest.NewEventService(s.eventStore(), s.db.TenantID, ingest.EventServiceOptions{Logger: s.logger})
	levitatedv1.RegisterEventServiceServer(s.grpc, svc)
	gw := runtime.NewServeMux()
	if err := ingest.RegisterEventGateway(context.Background(), gw, svc); err != nil {
		return fmt.Errorf("event gateway: %w", err)
	}
	for _, p := range []string{"/api/v1/events", "/api/v1/events/", "/api/v1/events:batch", "/api/v1/events:tail"} {
		handle(p, s.whenReady(gw.ServeHTTP))
	}
	handle("/api/v4/organizations/{org}/change_events", s.whenReady(ingest.NewLast9Handler(svc).ServeHTTP))
	handle("POST /api/v4/oauth/access_token", ingest.NewLast9TokenHandler(nil))
	handle("POST /api/annotations", s.whenReady(ingest.NewAnnotationsHandler(svc).ServeHTTP))
	return nil
}

// eventRetention deletes expired events until ctx ends.
func (s *Server) eventRetention(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if err := s.events.EnforceRetention(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.logger.Error("event retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
