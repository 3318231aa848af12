package server

import (
	"fmt"
	"net/http"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/remotestore"
)

// This file joins levitated to a Thanos fleet from the other side
// (docs/scale-out.md §2): the series of remote StoreAPI endpoints
// (--query.store, typically one Thanos Querier over the fleet) are merged
// into what every query reads (queryable.Querier, events.go), so that
// PromQL with the event-window functions, the judge, impact verdicts, rules
// and the console see the fleet's metrics; change events stay in this
// store. What levitated serves to other stores (the StoreAPI, remote read)
// stays its own data.

// QueryStoreMaxBytesFlag is the flag that sets QueryStore.MaxBytes.
const QueryStoreMaxBytesFlag = "--query.store.max-bytes"

// newRemoteStore connects to the --query.store endpoints; nil when there
// are none.
func (s *Server) newRemoteStore() (*remotestore.Store, error) {
	o := s.opts.QueryStore
	if len(o.Endpoints) == 0 {
		return nil, nil
	}
	o.Registerer = s.opts.Registry
	// The change-event series are this store's, never the fleet's.
	o.LocalMetrics = []string{events.MetricChangeEvents, events.MetricActive, events.MetricWindowStart, events.MetricWindowEnd}
	o.Logger = s.logger.With("component", "query-store")
	if o.MaxBytesFlag == "" {
		o.MaxBytesFlag = QueryStoreMaxBytesFlag
	}
	rs, err := remotestore.New(o)
	if err != nil {
		return nil, fmt.Errorf("--query.store: %w", err)
	}
	s.logger.Info("remote stores merged into queries", "endpoints", o.Endpoints, "tenants", tenantsOrAll(o.Tenants))
	return rs, nil
}

func tenantsOrAll(ts []string) any {
	if len(ts) == 0 {
		return "all"
	}
	return ts
}

// localOnly serves a request from this store's data only: remote read
// feeds a Thanos sidecar, which must not serve the fleet's series again.
func localOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(remotestore.LocalOnly(r.Context())))
	})
}
