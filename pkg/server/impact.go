package server

import (
	"fmt"

	"github.com/levitated/levitated/pkg/canaryapi"
	"github.com/levitated/levitated/pkg/impact"
	"github.com/levitated/levitated/pkg/rangequery"
)

// newImpact builds change intelligence (pkg/impact): every judged change
// gets a verdict from the native analysis service, GET
// /api/v1/events/{id}/impact answers it and POST /api/v1/gates:evaluate
// gates on it. Its scheduler joins the background work.
func (s *Server) newImpact() (*impact.Service, error) {
	q := &rangequery.Runner{Engine: s.apiEngine(), Queryable: s.query}
	analyzer := canaryapi.New(q, s.events, s.db, s.opts.Query.Parser(), canaryapi.Options{Logger: s.logger.With("component", "impact")})
	opts := s.opts.Impact
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
