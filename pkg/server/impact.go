package server

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levitated/levitated/pkg/canaryapi"
	"github.com/levitated/levitated/pkg/impact"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/yield"
)

// newImpact builds change intelligence (pkg/impact): every judged change
// gets a verdict from the native analysis service, GET
// /api/v1/events/{id}/impact answers it and POST /api/v1/gates:evaluate
// gates on it. Its scheduler joins the background work.
func (s *Server) newImpact() (*impact.Service, error) {
	opts := s.opts.Impact
	share := opts.CPUShare
	if share == 0 {
		share = impact.DefaultCPUShare
	}
	// The queries of a judgement: each once per comparison (impact.Engine),
	// through the results cache but not sharded (one goroutine each: the
	// scheduler's work is background work), and the scheduler's paced
	// behind ingest (pkg/yield).
	pacer := yield.NewPacer(&s.sec.ingest, share, yield.DefaultMaxWait)
	engine := &impact.Engine{
		Inner:          s.cachedEngine(s.queryEngine()),
		Parser:         s.opts.Query.Parser(),
		RangeDependent: levpromql.EventFunctions(),
		Pacer:          pacer,
	}
	if err := registerPacerMetrics(s.opts.Registry, pacer); err != nil {
		return nil, err
	}
	q := &rangequery.Runner{Engine: engine, Queryable: s.query}
	analyzer := canaryapi.New(q, s.events, s.db, s.opts.Query.Parser(), canaryapi.Options{Logger: s.logger.With("component", "impact")})
	opts.Logger = s.logger.With("component", "impact")
	opts.Registerer = s.opts.Registry
	svc, err := impact.New(impact.Deps{
		Analyzer: analyzer,
		Events:   s.events,
		Samples:  s.db,
		Tenants:  s.db,
		Parser:   s.opts.Query.Parser(),
		Series:   s.query,
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("change impact: %w", err)
	}
	s.impact = svc
	s.jobs.add("impact", svc.Run)
	return svc, nil
}

// registerPacerMetrics exposes what the pacer of the scheduler's queries
// did: levitated_impact_query_seconds_total{phase}, the time its queries
// ran, rested after running, and waited for write requests to end.
func registerPacerMetrics(reg prometheus.Registerer, p *yield.Pacer) error {
	if reg == nil {
		return nil
	}
	for _, ph := range []struct {
		name string
		f    func(yield.Stats) time.Duration
	}{
		{"ran", func(st yield.Stats) time.Duration { return st.Ran }},
		{"rested", func(st yield.Stats) time.Duration { return st.Rested }},
		{"waited", func(st yield.Stats) time.Duration { return st.Waited }},
	} {
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "levitated_impact_query_seconds_total",
			Help:        "Time of the automatic judgements' queries (paced behind ingest, --impact.cpu-share): ran, rested after running, waited for write requests to end.",
			ConstLabels: prometheus.Labels{"phase": ph.name},
		}, func() float64 { return ph.f(p.Stats()).Seconds() })
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register impact pacer metrics: %w", err)
		}
	}
	return nil
}
