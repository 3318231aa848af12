package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/canaryapi"
	"github.com/levitated/levitated/pkg/eventapi"
	"github.com/levitated/levitated/pkg/ingest"
	"github.com/levitated/levitated/pkg/kayenta"
	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/storage"
)

// handlers are the handlers the route table mounts, built over the store,
// the engine and the limits.
type handlers struct {
	remoteWrite, otlp                            http.Handler
	eventGateway, last9, last9Token, annotations http.Handler
	analysis, webhook, kayenta                   http.Handler
	impact, gate                                 http.Handler
	reload                                       http.Handler
	console, whoami                              http.Handler
	prometheus                                   http.Handler
}

// handlers builds every handler, registers the gRPC services, and adds
// Kayenta's execution runner to the background work.
func (s *Server) handlers() (handlers, error) {
	var h handlers
	// The ruler first: Prometheus' API reads its rules and alerts.
	reload, err := s.newRuler()
	if err != nil {
		return h, err
	}
	h.reload = reload
	rw, err := ingest.NewRemoteWriteHandler(s.writeStore(), s.opts.Write)
	if err != nil {
		return h, fmt.Errorf("remote write handler: %w", err)
	}
	otlp, err := ingest.NewOTLPHandler(s.otlpStore(), s.opts.Write)
	if err != nil {
		return h, fmt.Errorf("OTLP handler: %w", err)
	}
	// Refusals of the store and the limits are returned and answered
	// as text, as remote write answers its own errors.
	h.remoteWrite, h.otlp = s.serveErrors(DialectText, rw.Serve), s.serveErrors(DialectText, otlp.Serve)

	// Change events: gRPC levitated.v1.EventService, its REST face,
	// Last9's change-events API and Grafana's annotation API.
	svc := eventapi.NewEventService(s.events, s.db, eventapi.EventServiceOptions{Appender: s.eventAppender(), Logger: s.logger})
	levitatedv1.RegisterEventServiceServer(s.grpc, svc)
	gw := runtime.NewServeMux(runtime.WithErrorHandler(gatewayError))
	if err := eventapi.RegisterEventGateway(context.Background(), gw, svc); err != nil {
		return h, fmt.Errorf("event gateway: %w", err)
	}
	h.eventGateway = gw
	h.last9 = s.serveErrors(DialectJSON, eventapi.NewLast9Handler(svc).Serve)
	h.last9Token = eventapi.NewLast9TokenHandler(nil)
	h.annotations = s.serveErrors(DialectJSON, eventapi.NewAnnotationsHandler(svc).Serve)

	// Change intelligence (pkg/impact); it also records every analysis
	// below as a change_analysis event and series.
	imp, err := s.newImpact()
	if err != nil {
		return h, err
	}
	h.impact, h.gate = imp.ImpactHandler(), imp.GateHandler()
	levitatedv1.RegisterImpactServiceServer(s.grpc, imp.GRPC())
	rec := analysisRecorder{imp}

	// Canary analysis: Kayenta's REST API (pkg/kayenta), the native
	// levitated.v1.AnalysisService over gRPC and REST, and Flagger's
	// webhook (pkg/canaryapi), all querying what the HTTP API queries.
	q := &rangequery.Runner{Engine: s.apiEngine(), Queryable: s.query}
	kns, err := s.db.Namespace(storage.OwnerAnalysis)
	if err != nil {
		return h, err
	}
	k, err := kayenta.New(kns, s.db, q, kayenta.Options{
		Recorder:   rec,
		Logger:     s.logger.With("component", "kayenta"),
		Registerer: s.opts.Registry,
	})
	if err != nil {
		return h, fmt.Errorf("kayenta API: %w", err)
	}
	kmux := http.NewServeMux()
	k.Register(kmux)
	h.kayenta = kmux
	s.jobs.add("kayenta", k.Run)

	native := canaryapi.New(q, s.events, s.db, s.opts.Query.Parser(), canaryapi.Options{Logger: s.logger.With("component", "analysis"), Recorder: rec})
	levitatedv1.RegisterAnalysisServiceServer(s.grpc, native)
	if h.analysis, err = native.Handler(context.Background()); err != nil {
		return h, err
	}
	h.webhook = native.WebhookHandler()

	if h.console, h.whoami, err = s.consoleHandlers(); err != nil {
		return h, err
	}

	h.prometheus = s.prometheusAPI()
	return h, nil
}
