package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage"
)

// Remote write 2.0 allows a series with exemplars and neither samples nor
// histograms ("Exemplars may be specified without samples or histograms",
// io.prometheus.write.v2.TimeSeries), and Prometheus 3's sender sends every
// exemplar so: exemplars are records of their own in its WAL, each queued
// as a series of its own. Prometheus' receiver (storage/remote, v0.316.0)
// answers such a series with 400 "TimeSeries must contain at least one
// sample or histogram", so a Prometheus sending to a Prometheus loses all
// its exemplars; the real-sender test (compat/prometheus_test.go) found it.
// levitated takes those series out of the body before Prometheus' handler
// sees it and appends their exemplars to the series they name once the
// handler has committed the rest, before the response goes out. As in
// Prometheus' handling of exemplars, one that cannot be stored (its series
// unknown, a duplicate, more than 10 minutes ahead) is dropped without
// failing the request; the Exemplars-Written header counts the stored ones.

// seriesExemplars are the exemplars of one exemplar-only series.
type seriesExemplars struct {
	labels    labels.Labels
	exemplars []exemplar.Exemplar
}

// splitExemplarOnly returns the snappy body without the series that
// v.exemplarOnly lists, and those series decoded. v has validated decoded.
func splitExemplarOnly(decoded []byte, v *validator) ([]byte, []seriesExemplars, error) {
	symbols := make([]string, len(v.symbols))
	for i, s := range v.symbols {
		symbols[i] = string(s)
	}
	out := make([]byte, 0, len(decoded))
	held := make([]seriesExemplars, 0, len(v.exemplarOnly))
	sb := labels.NewScratchBuilder(0)
	next, series := 0, 0
	for b := decoded; len(b) > 0; {
		f, n, err := nextField(b, "io.prometheus.write.v2.Request")
		if err != nil {
			return nil, nil, err
		}
		raw := b[:n]
		b = b[n:]
		if f.num != v2TimeSeries {
			out = append(out, raw...)
			continue
		}
		idx := series
		series++
		if next >= len(v.exemplarOnly) || v.exemplarOnly[next] != idx {
			out = append(out, raw...)
			continue
		}
		next++
		var ts writev2.TimeSeries
		if err := ts.Unmarshal(f.bytes); err != nil {
			return nil, nil, badf("decode timeseries[%d]: %v", idx, err)
		}
		ls, err := ts.ToLabels(&sb, symbols)
		if err != nil {
			return nil, nil, badf("timeseries[%d]: %v", idx, err)
		}
		se := seriesExemplars{labels: ls, exemplars: make([]exemplar.Exemplar, 0, len(ts.Exemplars))}
		for i, ep := range ts.Exemplars {
			e, err := ep.ToExemplar(&sb, symbols)
			if err != nil {
				return nil, nil, badf("timeseries[%d] exemplar %d: %v", idx, i, err)
			}
			se.exemplars = append(se.exemplars, e)
		}
		// AppendExemplars takes them in timestamp order.
		slices.SortFunc(se.exemplars, exemplar.Compare)
		held = append(held, se)
	}
	return snappy.Encode(nil, out), held, nil
}

// storeExemplars appends held exemplars in one commit and returns how many
// were stored.
func (h *RemoteWriteHandler) storeExemplars(ctx context.Context, held []seriesExemplars) (int, error) {
	app := h.store.AppenderV2(ctx)
	ea, ok := app.(storage.ExemplarAppenderV2)
	if !ok {
		_ = app.Rollback()
		return 0, fmt.Errorf("remote write 2.0 exemplars need a storage.ExemplarAppenderV2, got %T", app)
	}
	maxT := timestamp.FromTime(time.Now().Add(maxAheadTime))
	written := 0
	for _, se := range held {
		es := se.exemplars
		if i := slices.IndexFunc(es, func(e exemplar.Exemplar) bool { return e.Ts > maxT }); i >= 0 {
			es = es[:i] // sorted: the rest is too far ahead too
		}
		if len(es) == 0 {
			continue
		}
		_, err := ea.AppendExemplars(0, se.labels, es)
		var perr *storage.AppendPartialError
		switch {
		case err == nil:
			written += len(es)
		case errors.As(err, &perr):
			written += len(es) - len(perr.ExemplarErrors)
		case errors.Is(err, storage.ErrNotFound):
			h.logger.Debug("Dropped remote write exemplars of an unknown series", "series", se.labels.String())
		default:
			_ = app.Rollback()
			return 0, fmt.Errorf("append exemplars of %s: %w", se.labels.String(), err)
		}
	}
	if err := app.Commit(); err != nil {
		return 0, fmt.Errorf("store exemplars: %w", err)
	}
	return written, nil
}

// exemplarWriter stores the held exemplars when Prometheus' handler writes
// its status, after its own commit: on a 2xx, or a 400 for some series
// (the handler stored the others), and adds them to the Exemplars-Written
// header. If they cannot be stored the answer is a 500, which makes the
// sender retry the request (the samples it resends are stored already, and
// accepted again as duplicates).
type exemplarWriter struct {
	http.ResponseWriter
	store       func() (int, error)
	wroteHeader bool
	failed      bool
}

const exemplarsWrittenHeader = "X-Prometheus-Remote-Write-Exemplars-Written"

func (w *exemplarWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if code/100 == 2 || code == http.StatusBadRequest {
		n, err := w.store()
		if err != nil {
			w.failed = true
			for _, k := range []string{"Samples", "Histograms", "Exemplars"} {
				w.Header().Del("X-Prometheus-Remote-Write-" + k + "-Written")
			}
			http.Error(w.ResponseWriter, err.Error(), http.StatusInternalServerError)
			return
		}
		prev, _ := strconv.Atoi(w.Header().Get(exemplarsWrittenHeader))
		w.Header().Set(exemplarsWrittenHeader, strconv.Itoa(prev+n))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *exemplarWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(b), nil // the 500 and its message are written
	}
	return w.ResponseWriter.Write(b)
}
