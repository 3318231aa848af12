package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/labels"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/levitated/levitated/pkg/ingest"
	"github.com/levitated/levitated/pkg/storage"
)

// routes mounts every HTTP handler on s.mux.
func (s *Server) routes(m *httpMetrics) error {
	rw, err := ingest.NewRemoteWriteHandler(s.writeStore(), s.opts.Write)
	if err != nil {
		return fmt.Errorf("remote write handler: %w", err)
	}
	otlp, err := ingest.NewOTLPHandler(s.otlpStore(), s.opts.Write)
	if err != nil {
		return fmt.Errorf("OTLP handler: %w", err)
	}
	handle := func(pattern string, h http.Handler) {
		s.mux.Handle(pattern, m.instrument(h))
	}
	// Remote write; /api/v1/push is the path Mimir's tooling uses.
	handle("/api/v1/write", s.whenReady(rw.ServeHTTP))
	handle("/api/v1/push", s.whenReady(rw.ServeHTTP))
	handle("/api/v1/otlp/v1/metrics", s.whenReady(otlp.ServeHTTP))
	// Served from the store rather than Prometheus' scrape and head state.
	handle("GET /api/v1/metadata", s.whenReady(s.metadata))
	handle("GET /api/v1/status/tsdb", s.whenReady(s.tsdbStatus))
	handle("POST /api/v1/admin/flush", s.whenReady(s.flush))
	if err := s.mountEvents(handle); err != nil {
		return err
	}
	// Everything else under /api/v1/ is Prometheus' API.
	handle("/api/v1/", withTemplates(s.prometheusAPI()))

	handle("/-/healthy", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprint(w, "levitated is Healthy.\n")
	}))
	handle("/-/ready", s.whenReady(s.readyHandler))
	handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{Registry: s.opts.Registry}))
	// Go's profiler, as Prometheus serves it.
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return nil
}

// instrument counts and times a handler, labelled by route.
func (m *httpMetrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := routeName(r.URL.Path)
		promhttp.InstrumentHandlerInFlight(m.inFlight,
			promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(prometheus.Labels{"handler": name}),
				promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(prometheus.Labels{"handler": name}), h),
			),
		).ServeHTTP(w, r)
	})
}

// routeName bounds the handler label: the path, with label names folded.
func routeName(path string) string {
	switch {
	case strings.HasPrefix(path, "/api/v1/label/"):
		return "/api/v1/label/:name/values"
	case strings.HasPrefix(path, "/api/v1/"), strings.HasPrefix(path, "/-/"), path == "/metrics":
		if len(path) > 64 {
			return "other"
		}
		return path
	default:
		return "other"
	}
}

// The handlers below answer in the envelope and with the error types of
// Prometheus' API (web/api/v1.Response).

func respond(w http.ResponseWriter, data any) {
	b, err := json.Marshal(&v1.Response{Status: "success", Data: data})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// respondError writes an error as Prometheus does; typ is one of its error
// types (bad_data, internal, ...) and code the status it maps to.
func respondError(w http.ResponseWriter, typ string, code int, err error) {
	b, _ := json.Marshal(&v1.Response{Status: "error", ErrorType: typ, Error: err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// metadata serves /api/v1/metadata from the store, with Prometheus'
// parameters (metric, limit, limit_per_metric) and semantics: a negative
// limit means none, limit=0 returns nothing.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	limit := -1
	if v := r.FormValue("limit"); v != "" {
		var err error
		if limit, err = strconv.Atoi(v); err != nil {
			respondError(w, "bad_data", http.StatusBadRequest, errors.New("limit must be a number"))
			return
		}
	}
	limitPerMetric := -1
	if v := r.FormValue("limit_per_metric"); v != "" {
		var err error
		if limitPerMetric, err = strconv.Atoi(v); err != nil {
			respondError(w, "bad_data", http.StatusBadRequest, errors.New("limit_per_metric must be a number"))
			return
		}
	}
	if limit == 0 {
		respond(w, map[string]any{})
		return
	}
	md, err := s.db.Metadata(r.Context(), r.FormValue("metric"), max(limit, 0), max(limitPerMetric, 0))
	if err != nil {
		respondError(w, "internal", http.StatusInternalServerError, fmt.Errorf("read metadata: %w", err))
		return
	}
	respond(w, md)
}

// tsdbStatus serves /api/v1/status/tsdb from the store's statistics, in
// Prometheus' shape and with its limit parameter.
func (s *Server) tsdbStatus(w http.ResponseWriter, r *http.Request) {
	const maxTSDBLimit = 10000
	limit := 10
	if v := r.FormValue("limit"); v != "" {
		var err error
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			respondError(w, "bad_data", http.StatusBadRequest, errors.New("limit must be a positive number"))
			return
		}
		if limit > maxTSDBLimit {
			respondError(w, "bad_data", http.StatusBadRequest, fmt.Errorf("limit must not exceed %d", maxTSDBLimit))
			return
		}
	}
	st, err := s.db.Stats(r.Context(), labels.MetricName, limit)
	if err != nil {
		respondError(w, "internal", http.StatusInternalServerError, fmt.Errorf("read TSDB statistics: %w", err))
		return
	}
	nan := math.NaN()
	chunks := int64(nan) // Prometheus reports this when it has no head chunk gauge
	respond(w, v1.TSDBStatus{
		HeadStats: v1.HeadStats{
			NumSeries:     st.NumSeries,
			ChunkCount:    chunks,
			MinTime:       st.MinTime,
			MaxTime:       st.MaxTime,
			NumLabelPairs: st.IndexPostingStats.NumLabelPairs,
		},
		SeriesCountByMetricName:     v1.TSDBStatsFromIndexStats(st.IndexPostingStats.CardinalityMetricsStats),
		LabelValueCountByLabelName:  v1.TSDBStatsFromIndexStats(st.IndexPostingStats.CardinalityLabelStats),
		MemoryInBytesByLabelName:    v1.TSDBStatsFromIndexStats(st.IndexPostingStats.LabelValueStats),
		SeriesCountByLabelValuePair: v1.TSDBStatsFromIndexStats(st.IndexPostingStats.LabelValuePairsStats),
	})
}

// flush writes the store's in-memory data to Pebble and compacts it
// (POST /api/v1/admin/flush, for benchmarks). 204 on success, like
// Prometheus' admin endpoints.
func (s *Server) flush(w http.ResponseWriter, r *http.Request) {
	if err := s.db.Flush(r.Context()); err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			respondError(w, "unavailable", http.StatusServiceUnavailable, fmt.Errorf("flush storage: %w", err))
			return
		}
		respondError(w, "internal", http.StatusInternalServerError, fmt.Errorf("flush storage: %w", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
