package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// RemoteWriteStore is what remote write needs from the store: Prometheus'
// AppendableV2 for samples, histograms and exemplars (its appenders also
// implement storage.ExemplarAppenderV2), and the v1 Appendable, whose
// UpdateMetadata stores the metadata entries of remote write 1.0 requests
// (Prometheus' own receiver drops them). Commit must make the data durable
// before it returns: the handler acknowledges with a 2xx only after it.
// The store may also refuse writes before they are stored (WriteQuota) or
// while it cannot take them (WriteError).
type RemoteWriteStore interface {
	storage.Appendable
	storage.AppendableV2
}

// MaxDecodedBodyBytes is the most a snappy body may decode to: the limit of
// Prometheus' receiver (client_golang's SnappyDecodeMiddleware), fixed.
const MaxDecodedBodyBytes = 32 << 20

// RemoteWriteOptions configure the remote-write and OTLP handlers.
type RemoteWriteOptions struct {
	// MaxBodyBytes is the largest (compressed) body accepted; a larger one
	// gets 400. Default and maximum: MaxDecodedBodyBytes.
	MaxBodyBytes int64
	// WriteLimits are the label limits; a store with a WriteQuota may
	// change them per tenant (remotewrite_admission.go).
	WriteLimits
	// LookbackDelta is the query lookback delta, which OTLP translation uses
	// for target_info. Default 5m.
	LookbackDelta time.Duration

	Logger     *slog.Logger          // may be nil
	Registerer prometheus.Registerer // may be nil
}

// DefaultRemoteWriteOptions returns the defaults.
func DefaultRemoteWriteOptions() RemoteWriteOptions {
	o := RemoteWriteOptions{}
	o.EnsureDefaults()
	return o
}

// EnsureDefaults fills zero fields with their defaults.
func (o *RemoteWriteOptions) EnsureDefaults() {
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = MaxDecodedBodyBytes
	}
	if o.MaxLabelsPerSeries == 0 {
		o.MaxLabelsPerSeries = 128
	}
	if o.MaxLabelNameBytes == 0 {
		o.MaxLabelNameBytes = 1024
	}
	if o.MaxLabelValueBytes == 0 {
		o.MaxLabelValueBytes = 16 << 10
	}
	if o.LookbackDelta == 0 {
		o.LookbackDelta = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every field that cannot be used, in one error.
func (o RemoteWriteOptions) Validate() error {
	var errs []error
	if o.MaxBodyBytes <= 0 || o.MaxBodyBytes > MaxDecodedBodyBytes {
		errs = append(errs, fmt.Errorf("ingest: max body bytes %d is not in [1, %d]", o.MaxBodyBytes, MaxDecodedBodyBytes))
	}
	if o.MaxLabelsPerSeries <= 0 {
		errs = append(errs, fmt.Errorf("ingest: max labels per series %d is not positive", o.MaxLabelsPerSeries))
	}
	if o.MaxLabelNameBytes <= 0 {
		errs = append(errs, fmt.Errorf("ingest: max label name bytes %d is not positive", o.MaxLabelNameBytes))
	}
	if o.MaxLabelValueBytes <= 0 {
		errs = append(errs, fmt.Errorf("ingest: max label value bytes %d is not positive", o.MaxLabelValueBytes))
	}
	return errors.Join(errs...)
}

// RemoteWriteHandler receives Prometheus remote write 1.0 and 2.0.
//
// Remote write 2.0 is stored by Prometheus' own receiver
// (storage/remote.NewWriteHandler), so content negotiation, the
// X-Prometheus-Remote-Write-*-Written headers, the 400-versus-500 choice for
// storage errors and partial writes behave as in Prometheus v3. Remote write
// 1.0, what nearly every sender speaks, is stored in one pass over the wire
// bytes with the same semantics (remotewrite_v1.go; a test runs Prometheus'
// receiver beside it on the same requests). In front of both the handler
// rejects with 400, before anything is stored, what Prometheus' receiver is
// lenient about:
//   - a body over MaxBodyBytes (Prometheus answers 413 over 32 MiB; the
//     remote-write specs make every non-retryable failure a 400), or one
//     whose snappy header claims more than MaxDecodedBodyBytes;
//   - a 2.0 body sent with the 1.0 Content-Type and the reverse (Prometheus
//     skips the unknown fields and answers 204 having stored nothing);
//   - in 1.0, series with empty, duplicate or unsorted labels, no __name__,
//     or invalid UTF-8 (Prometheus drops those series and answers 204);
//   - in both, empty label values (the 1.0 spec: "MUST NOT contain any
//     empty label names or values"), symbol references out of range, and the
//     label count and size limits.
//
// Remote write 1.0 metadata is stored through UpdateMetadata.
type RemoteWriteHandler struct {
	store  RemoteWriteStore
	opts   RemoteWriteOptions
	prom   http.Handler
	logger *slog.Logger

	invalid *prometheus.CounterVec
}

// NewRemoteWriteHandler returns the handler for POST /api/v1/write.
func NewRemoteWriteHandler(store RemoteWriteStore, opts RemoteWriteOptions) (*RemoteWriteHandler, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	accepted := remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}
	return &RemoteWriteHandler{
		store:  store,
		opts:   opts,
		prom:   remote.NewWriteHandler(opts.Logger, opts.Registerer, errorCatcher{store}, accepted, false, true),
		logger: opts.Logger,
		invalid: promauto.With(opts.Registerer).NewCounterVec(prometheus.CounterOpts{
			Name: "levitated_remote_write_invalid_requests_total",
			Help: "Remote write requests rejected before storing anything, by protocol version.",
		}, []string{"version"}),
	}, nil
}

// Serve stores a remote write request and answers it, but for a refusal
// of the store or its quota (WriteQuota: a limit, the in-flight budget, a
// full disk), which it returns unanswered for the caller to answer with
// the error's status; nothing of a refused request is stored. A request
// the handler rejects itself (a malformed body, a wrong Content-Type) is
// answered here, as Prometheus' receiver answers it.
func (h *RemoteWriteHandler) Serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return &requestError{http.StatusMethodNotAllowed, errors.New("Method not allowed")}
	}
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		contentType = "application/x-protobuf"
	}
	msgType, err := remoteapi.ParseProtoMsg(contentType)
	if err != nil {
		return &requestError{http.StatusUnsupportedMediaType, err}
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != string(remoteapi.SnappyBlockCompression) {
		return &requestError{http.StatusUnsupportedMediaType, fmt.Errorf("%v encoding (compression) is not accepted by this server; only %v is acceptable", enc, remoteapi.SnappyBlockCompression)}
	}

	if err := h.unavailable(); err != nil {
		return refused(w, msgType, err)
	}
	body, decoded, release, err := h.readBody(r)
	if release != nil {
		defer release()
	}
	var refusal *refusalError
	if errors.As(err, &refusal) {
		return refused(w, msgType, refusal.err)
	}
	v := validator{limits: h.writeLimits(r.Context())}
	if err == nil {
		if err := h.admit(r.Context(), msgType, decoded); err != nil {
			return refused(w, msgType, err)
		}
	}
	if err == nil && msgType == remoteapi.WriteV1MessageType {
		code, err := h.writeV1(r.Context(), decoded, &v)
		if code == http.StatusBadRequest && errors.Is(err, errInvalidWrite) {
			return h.reject(w, msgType, err)
		}
		if err != nil {
			if code == http.StatusBadRequest {
				return &requestError{code, err}
			}
			return err // the store's: its status, or 500
		}
		w.WriteHeader(code)
		return nil
	}
	if err == nil {
		if msgType == remoteapi.WriteV1MessageType {
			err = v.validateV1(decoded)
		} else {
			err = v.validateV2(decoded)
		}
	}
	if err != nil {
		return h.reject(w, msgType, err)
	}
	if err := h.storeMetadata(r, v.metadata); err != nil {
		return err
	}

	if msgType == remoteapi.WriteV2MessageType && len(v.exemplarOnly) > 0 {
		// Prometheus' handler refuses series with only exemplars, which the
		// 2.0 spec allows and Prometheus' own sender sends for every
		// exemplar: they are stored after it, in remotewrite_v2_exemplars.go.
		var held []seriesExemplars
		body, held, err = splitExemplarOnly(decoded, &v)
		if err != nil {
			return h.reject(w, msgType, err)
		}
		w = &exemplarWriter{ResponseWriter: w, store: func() (int, error) { return h.storeExemplars(r.Context(), held) }}
	}

	// Prometheus' handler decodes the snappy body itself.
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if err := serveCatching(h.prom, w, r); err != nil {
		return err
	}
	if ew, ok := w.(*exemplarWriter); ok && !ew.wroteHeader {
		ew.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// refusalError is the quota's refusal of a body's memory.
type refusalError struct{ err error }

func (e *refusalError) Error() string { return e.err.Error() }

// readBody reads the compressed body within the limit, reserves the
// memory of it and its decoded form from the quota's in-flight budget
// (release, if not nil, gives it back), and decodes it. A refusal of the
// budget is a *refusalError.
func (h *RemoteWriteHandler) readBody(r *http.Request) (body, decoded []byte, release func(), err error) {
	cbuf, err := readLimited(r.Body, r.ContentLength, h.opts.MaxBodyBytes)
	var dbuf *[]byte
	var admitted func()
	release = func() {
		if admitted != nil {
			admitted()
		}
		putBuf(&compressedBufs, cbuf)
		putBuf(&decodedBufs, dbuf)
	}
	body = *cbuf
	if err != nil {
		return nil, nil, release, badf("read request body: %v", err)
	}
	if int64(len(body)) > h.opts.MaxBodyBytes {
		return nil, nil, release, badf("request body is larger than %d bytes (limit set by --write.max-body-bytes)", h.opts.MaxBodyBytes)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, nil, release, badf("decode snappy body: %v", err)
	}
	if n > MaxDecodedBodyBytes {
		return nil, nil, release, badf("snappy body decodes to %d bytes, more than the %d allowed", n, MaxDecodedBodyBytes)
	}
	if q := h.quota(); q != nil {
		if admitted, err = q.ReserveWriteBytes(r.Context(), int64(len(body))+int64(n)); err != nil {
			return nil, nil, release, &refusalError{err}
		}
	}
	dbuf = getBuf(&decodedBufs, n)
	decoded, err = snappy.Decode(*dbuf, body)
	if err != nil {
		return nil, nil, release, badf("decode snappy body: %v", err)
	}
	return body, decoded, release, nil
}

// requestError is a request the handler refuses itself (a wrong method,
// Content-Type or encoding, a malformed body): Serve returns it for the
// caller to answer with its status and message, as Prometheus' receiver
// answers it (text/plain).
type requestError struct {
	code int
	err  error
}

func (e *requestError) Error() string   { return e.err.Error() }
func (e *requestError) Unwrap() error   { return e.err }
func (e *requestError) HTTPStatus() int { return e.code }

// reject counts and logs a malformed request and returns its 400; a 2.0
// sender reads from the headers it sets that nothing was written.
func (h *RemoteWriteHandler) reject(w http.ResponseWriter, msgType remoteapi.WriteMessageType, err error) error {
	version := "1.0"
	if msgType == remoteapi.WriteV2MessageType {
		version = "2.0"
		// Nothing was written; 2.0 senders read the counts from these.
		for _, k := range []string{"Samples", "Histograms", "Exemplars"} {
			w.Header().Set("X-Prometheus-Remote-Write-"+k+"-Written", "0")
		}
	}
	h.invalid.WithLabelValues(version).Inc()
	h.logger.Warn("Rejected remote write request", "version", version, "err", err)
	return &requestError{http.StatusBadRequest, err}
}

// v1MetricTypes maps prometheus.MetricMetadata.MetricType to Prometheus'
// metric types.
var v1MetricTypes = [...]model.MetricType{
	model.MetricTypeUnknown, model.MetricTypeCounter, model.MetricTypeGauge,
	model.MetricTypeHistogram, model.MetricTypeGaugeHistogram, model.MetricTypeSummary,
	model.MetricTypeInfo, model.MetricTypeStateset,
}

// storeMetadata stores the metadata entries of a remote write 1.0 request
// in one commit.
func (h *RemoteWriteHandler) storeMetadata(r *http.Request, entries []metadataEntry) error {
	if len(entries) == 0 {
		return nil
	}
	app := h.store.Appender(r.Context())
	for _, e := range entries {
		m := metadata.Metadata{Type: v1MetricTypes[e.typ], Help: string(e.help), Unit: string(e.unit)}
		if _, err := app.UpdateMetadata(0, labels.FromStrings(labels.MetricName, string(e.family)), m); err != nil {
			_ = app.Rollback()
			return fmt.Errorf("store metadata of %q: %w", e.family, err)
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("store metadata: %w", err)
	}
	return nil
}

// OTLPHandler receives OTLP metrics: Prometheus v3's OTLP receiver with
// its default translation settings, with the body bounded by
// MaxBodyBytes.
type OTLPHandler struct {
	prom http.Handler
	opts RemoteWriteOptions
}

// NewOTLPHandler returns the handler for POST /api/v1/otlp/v1/metrics.
func NewOTLPHandler(store storage.AppendableV2, opts RemoteWriteOptions) (*OTLPHandler, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	cfg := config.DefaultConfig
	h := remote.NewOTLPWriteHandler(opts.Logger, opts.Registerer, errorCatcher{store}, func() config.Config { return cfg },
		remote.OTLPOptions{LookbackDelta: opts.LookbackDelta})
	return &OTLPHandler{prom: h, opts: opts}, nil
}

// Serve stores an OTLP request and answers it, but for a refusal of the
// store (a limit, a full disk), which it returns unanswered as
// RemoteWriteHandler.Serve does.
func (h *OTLPHandler) Serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return &requestError{http.StatusMethodNotAllowed, errors.New("Method not allowed")}
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		return &requestError{http.StatusBadRequest, errors.New("request body is larger than " + strconv.FormatInt(h.opts.MaxBodyBytes, 10) + " bytes (limit set by --write.max-body-bytes)")}
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
	return serveCatching(h.prom, w, r)
}
