package server

import (
	"fmt"

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
	engine := &impact.Engine{
		Inner:          s.cachedEngine(s.queryEngine()),
		Parser:         s.opts.Query.Parser(),
		RangeDependent: levpromql.EventFunctions(),
		Pacer:          yield.NewPacer(&s.sec.ingest, share, yield.DefaultMaxWait),
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
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("change impact: %w", err)
	}
	s.jobs.add("impact", svc.Run)
	return svc, nil
}
