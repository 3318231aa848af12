package server

import (
	"github.com/prometheus/prometheus/promql"

	"github.com/levitated/levitated/pkg/limits"
	levpromql "github.com/levitated/levitated/pkg/promql"
)

// This file wires the per-tenant limits (pkg/limits) around what the
// routes reach: the store as remote write and the ruler see it (series
// limit; remote write asks its quota before decoding: in-flight bytes,
// samples per second, label limits), the store as OTLP sees it (samples
// per second at commit), the event store's writes (events per second) and
// the query engine. The request-level limits (in-flight writes, query
// slots and deadlines) are applied by route (security.admit).

// writeStore is the store with the write limits, for remote write and
// the ruler.
func (s *Server) writeStore() *limits.Appendable {
	return limits.NewAppendable(s.db, s.sec.limiter, limits.SamplesBeforeDecode)
}

// otlpStore is the store with the write limits, for OTLP: its samples are
// counted as they are appended.
func (s *Server) otlpStore() *limits.Appendable {
	return limits.NewAppendable(s.db, s.sec.limiter, limits.SamplesAtCommit)
}

// eventAppender is the event store's Append with the events rate limit.
func (s *Server) eventAppender() limits.EventAppender { return limits.Events(s.events, s.sec.limiter) }

// queryEngine is the engine with each tenant's query limits, refusing
// subqueries beyond --query.max-samples before they run.
func (s *Server) queryEngine() promql.QueryEngine {
	bounded := levpromql.BoundSubqueries(s.engine, s.opts.Query.MaxSamples)
	return &limits.Engine{QueryEngine: bounded, Limiter: s.sec.limiter, Timeout: s.opts.Query.Timeout}
}

// queryEngineOptions turns on the engine's query-cost feature, with no
// engine-wide cost limit. Per-tenant query limits need it; and only with it
// does Prometheus' engine check the query's context while a range
// function reads its window (the feature's guarded iterators), and start
// --query.timeout before the query waits for a slot and is parsed: without
// it, max_over_time(max_over_time(vector(1)[1d:1s])[30d:1s]) ran on for
// hours after its timeout and after its client left.
func queryEngineOptions(o Options) levpromql.Options {
	q := o.Query
	q.EnableQueryCost = true
	return q
}
