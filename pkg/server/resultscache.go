package server

import (
	"net/http"

	"github.com/prometheus/prometheus/promql"

	"github.com/levitated/levitated/pkg/events"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/resultscache"
)

// This file wires the range-query results cache (pkg/resultscache): the
// store and the event store tell it of every change they make visible, and
// the HTTP API's engine serves range queries through it.

// newResultsCache builds the cache (nil if --query.results-cache-bytes is 0)
// and hooks the store's options to it; call it before the store opens.
func (s *Server) newResultsCache() {
	o := &s.opts
	if len(o.QueryStore.Endpoints) > 0 && o.QueryResultsCacheBytes > 0 {
		// Remote stores change without telling the cache: it would serve
		// stale steps.
		s.logger.Info("query results cache off: remote stores (--query.store) cannot invalidate it")
		o.QueryResultsCacheBytes = 0
	}
	s.cache = resultscache.New(resultscache.Options{
		MaxBytes:       o.QueryResultsCacheBytes,
		Parser:         s.opts.Query.Parser(),
		EventFunctions: levpromql.EventFunctions(),
		EventMetrics:   []string{events.MetricChangeEvents, events.MetricActive, events.MetricWindowStart, events.MetricWindowEnd},
		Registerer:     o.Registry,
	})
	if s.cache != nil {
		o.Storage.OnChange = s.cache.SamplesChanged
	}
}

// eventsChanged is the event store's OnChange.
func (s *Server) eventsChanged(id uint32) {
	if s.cache == nil {
		return
	}
	if name, ok := s.db.TenantName(id); ok {
		s.cache.EventsChanged(name)
	}
}

// cachedEngine serves the cacheable range queries of inner through the
// cache.
func (s *Server) cachedEngine(inner promql.QueryEngine) promql.QueryEngine {
	return s.cache.Engine(inner)
}

// withNoCache sits in front of /api/v1/query_range: nocache=1 (as
// VictoriaMetrics spells it) evaluates the query without the results
// cache, neither reading nor filling it.
func withNoCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err == nil && r.Form.Get("nocache") == "1" {
			r = r.WithContext(resultscache.Bypass(r.Context()))
		}
		next.ServeHTTP(w, r)
	})
}
