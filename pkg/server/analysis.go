package server

import (
	"context"
	"fmt"
	"net/http"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/canaryapi"
	"github.com/levitated/levitated/pkg/kayenta"
	levpromql "github.com/levitated/levitated/pkg/promql"
)

// kayentaPaths are the paths of Kayenta's REST API, served at the root as
// Kayenta serves them, so that a client's Kayenta address is levitated's.
var kayentaPaths = []string{"/canaryConfig", "/canaryConfig/", "/canary", "/canary/", "/judges", "/credentials", "/metricSetPairList/"}

// mountAnalysis serves canary analysis: Kayenta's REST API (pkg/kayenta) and
// the native levitated.v1.AnalysisService over gRPC, at POST
// /api/v1/analysis and, for Flagger's webhooks, at POST
// /api/v1/analysis:webhook (pkg/canaryapi), all querying what the HTTP API
// queries. It returns the Kayenta execution runner for Run to start, and to
// stop before the store closes.
func (s *Server) mountAnalysis(m *httpMetrics) (func(ctx context.Context) error, error) {
	q := &kayenta.PromQL{Engine: s.apiEngine(), Queryable: s.query}
	k, err := kayenta.New(s.db.Pebble(), s.db, q, kayenta.Options{
		Logger:     s.logger.With("component", "kayenta"),
		Registerer: s.opts.Registry,
	})
	if err != nil {
		return nil, fmt.Errorf("kayenta API: %w", err)
	}
	kmux := http.NewServeMux()
	k.Register(kmux)
	for _, p := range kayentaPaths {
		s.mux.Handle(p, m.instrument(s.whenReady(kmux.ServeHTTP)))
	}

	native := canaryapi.New(q, s.events, s.db, levpromql.NewParser(), canaryapi.Options{Logger: s.logger.With("component", "analysis")})
	levitatedv1.RegisterAnalysisServiceServer(s.grpc, native)
	h, err := native.Handler(context.Background())
	if err != nil {
		return nil, err
	}
	s.mux.Handle("POST /api/v1/analysis", m.instrument(s.whenReady(h.ServeHTTP)))
	s.mux.Handle("POST /api/v1/analysis:webhook", m.instrument(s.whenReady(native.WebhookHandler().ServeHTTP)))
	return k.Run, nil
}
