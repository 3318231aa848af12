package server

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/levitated/levitated/pkg/storage"
	"github.com/prometheus/prometheus/model/labels"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// The handlers below serve Prometheus API endpoints from the store rather
// than from Prometheus' scrape and head state; they answer in the envelope
// and with the error types of Prometheus' API (errors.go).

// metadata serves /api/v1/metadata from the store, with Prometheus'
// parameters (metric, limit, limit_per_metric) and semantics: a negative
// limit means none, limit=0 returns nothing.
func (s *Server) metadata(r *http.Request) (any, error) {
	limit := -1
	if v := r.FormValue("limit"); v != "" {
		var err error
		if limit, err = strconv.Atoi(v); err != nil {
			return nil, badData(errors.New("limit must be a number"))
		}
	}
	limitPerMetric := -1
	if v := r.FormValue("limit_per_metric"); v != "" {
		var err error
		if limitPerMetric, err = strconv.Atoi(v); err != nil {
			return nil, badData(errors.New("limit_per_metric must be a number"))
		}
	}
	if limit == 0 {
		return map[string]any{}, nil
	}
	md, err := s.db.Metadata(r.Context(), r.FormValue("metric"), max(limit, 0), max(limitPerMetric, 0))
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	return md, nil
}

// tsdbStatus serves /api/v1/status/tsdb from the store's statistics, in
// Prometheus' shape and with its limit parameter.
func (s *Server) tsdbStatus(r *http.Request) (any, error) {
	const maxTSDBLimit = 10000
	limit := 10
	if v := r.FormValue("limit"); v != "" {
		var err error
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return nil, badData(errors.New("limit must be a positive number"))
		}
		if limit > maxTSDBLimit {
			return nil, badData(fmt.Errorf("limit must not exceed %d", maxTSDBLimit))
		}
	}
	st, err := s.db.Stats(r.Context(), labels.MetricName, limit)
	if err != nil {
		return nil, fmt.Errorf("read TSDB statistics: %w", err)
	}
	nan := math.NaN()
	chunks := int64(nan) // Prometheus reports this when it has no head chunk gauge
	return v1.TSDBStatus{
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
	}, nil
}

// flush writes the store's in-memory data to Pebble and compacts it
// (POST /api/v1/admin/flush, for benchmarks). 204 on success, like
// Prometheus' admin endpoints.
func (s *Server) flush(r *http.Request) (any, error) {
	if err := s.db.Flush(r.Context()); err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return nil, &statusError{http.StatusServiceUnavailable, fmt.Errorf("flush storage: %w", err)}
		}
		return nil, fmt.Errorf("flush storage: %w", err)
	}
	return noContent{}, nil
}
