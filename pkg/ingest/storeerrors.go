package ingest

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// Prometheus' receivers (remote write 2.0, OTLP) store through the
// handler's store and answer any store error but a bad sample with a 500
// they write themselves: they cannot return the error. So that the
// handlers return a store's refusal (a limit's 429, a full disk's 503) as
// remote write 1.0 does, the receivers get the store through
// errorCatcher, which keeps the last error of an append or commit during
// a request, and a response writer that holds back a 5xx answer while
// there is such an error; the handler then returns the error instead.

type caughtKey struct{}

// caught is the last store error of one request.
type caught struct {
	mu  sync.Mutex
	err error
}

func (c *caught) set(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *caught) get() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// serveCatching serves r with a Prometheus receiver whose store is an
// errorCatcher, and returns the store error it answered with a 5xx, if
// any; then nothing of its answer was written.
func serveCatching(receiver http.Handler, w http.ResponseWriter, r *http.Request) error {
	c := &caught{}
	hw := &holdingWriter{ResponseWriter: w, c: c}
	receiver.ServeHTTP(hw, r.WithContext(context.WithValue(r.Context(), caughtKey{}, c)))
	if hw.held {
		return hw.err
	}
	return nil
}

// holdingWriter passes a receiver's answer through unless it is a 5xx
// with a store error caught.
type holdingWriter struct {
	http.ResponseWriter
	c     *caught
	wrote bool
	held  bool
	err   error
}

func (w *holdingWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	if code >= 500 {
		if w.err = w.c.get(); w.err != nil {
			w.held = true
			return
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *holdingWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *holdingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// errorCatcher is the store as Prometheus' receivers see it.
type errorCatcher struct{ storage.AppendableV2 }

func (s errorCatcher) AppenderV2(ctx context.Context) storage.AppenderV2 {
	app := s.AppendableV2.AppenderV2(ctx)
	c, ok := ctx.Value(caughtKey{}).(*caught)
	if !ok {
		return app
	}
	return &catchingAppender{AppenderV2: app, c: c}
}

type catchingAppender struct {
	storage.AppenderV2
	c *caught
}

func (a *catchingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	r, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	a.c.set(err)
	return r, err
}

// AppendExemplars passes exemplars on: Prometheus' remote write 2.0
// receiver needs a storage.ExemplarAppenderV2.
func (a *catchingAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	ea, ok := a.AppenderV2.(storage.ExemplarAppenderV2)
	if !ok {
		return ref, errors.New("store appender takes no exemplars")
	}
	return ea.AppendExemplars(ref, ls, es) // the receivers log these and go on
}

func (a *catchingAppender) Commit() error {
	err := a.AppenderV2.Commit()
	a.c.set(err)
	return err
}
