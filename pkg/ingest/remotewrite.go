package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
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
	WriteLimits
	// Admission, if set, applies per-tenant limits (remotewrite_admission.go).
	Admission WriteAdmission
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

	cacheMu sync.RWMutex
	caches  map[string]*seriesCache
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
		prom:   remote.NewWriteHandler(opts.Logger, opts.Registerer, store, accepted, false, true),
		logger: opts.Logger,
		caches: map[string]*seriesCache{},
		invalid: promauto.With(opts.Registerer).NewCounterVec(prometheus.CounterOpts{
			Name: "levitated_remote_write_invalid_requests_total",
			Help: "Remote write requests rejected before storing anything, by protocol version.",
		}, []string{"version"}),
	}, nil
}

func (h *RemoteWriteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
		return
	}
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		contentType = "application/x-protobuf"
	}
	msgType, err := remoteapi.ParseProtoMsg(contentType)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != string(remoteapi.SnappyBlockCompression) {
		http.Error(w, fmt.Sprintf("%v encoding (compression) is not accepted by this server; only %v is acceptable", enc, remoteapi.SnappyBlockCompression), http.StatusUnsupportedMediaType)
		return
	}

	if err := h.unavailable(); err != nil {
		h.refuse(w, msgType, err)
		return
	}
	body, decoded, release, err := h.readBody(r)
	if release != nil {
		defer release()
	}
	var refused interface{ HTTPStatus() int }
	if errors.As(err, &refused) {
		h.refuse(w, msgType, err)
		return
	}
	v := validator{limits: h.writeLimits(r.Context())}
	if err == nil {
		if err := h.admit(r.Context(), msgType, decoded); err != nil {
			h.refuse(w, msgType, err)
			return
		}
	}
	if err == nil && msgType == remoteapi.WriteV1MessageType {
		code, err := h.writeV1(r.Context(), decoded, &v)
		if code == http.StatusBadRequest && errors.Is(err, errInvalidWrite) {
			h.reject(w, msgType, err)
			return
		}
		if err != nil {
			if withStatus(err) {
				h.refuse(w, msgType, err)
				return
			}
			if code >= 500 {
				h.logger.Error("Error while storing the remote write request", "err", err)
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.WriteHeader(code)
		return
	}
	if err == nil {
		if msgType == remoteapi.WriteV1MessageType {
			err = v.validateV1(decoded)
		} else {
			err = v.validateV2(decoded)
		}
	}
	if err != nil {
		h.reject(w, msgType, err)
		return
	}
	if err := h.storeMetadata(r, v.metadata); err != nil {
		h.logger.Error("Error storing remote write metadata", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}

	if msgType == remoteapi.WriteV2MessageType && len(v.exemplarOnly) > 0 {
		// Prometheus' handler refuses series with only exemplars, which the
		// 2.0 spec allows and Prometheus' own sender sends for every
		// exemplar: they are stored after it, in remotewrite_v2_exemplars.go.
		var held []seriesExemplars
		body, held, err = splitExemplarOnly(decoded, &v)
		if err != nil {
			h.reject(w, msgType, err)
			return
		}
		w = &exemplarWriter{ResponseWriter: w, store: func() (int, error) { return h.storeExemplars(r.Context(), held) }}
	}

	// Prometheus' handler decodes the snappy body itself.
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	h.prom.ServeHTTP(w, r)
	if ew, ok := w.(*exemplarWriter); ok && !ew.wroteHeader {
		ew.WriteHeader(http.StatusNoContent)
	}
}

// readBody reads the compressed body within the limit, reserves the
// memory of it and its decoded form from the admission's in-flight budget
// (release, if not nil, gives it back), and decodes it. A refusal of the
// budget is an error with an HTTPStatus.
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
	if h.opts.Admission != nil {
		if admitted, err = h.opts.Admission.ReserveBytes(r.Context(), int64(len(body))+int64(n)); err != nil {
			return nil, nil, release, err
		}
	}
	dbuf = getBuf(&decodedBufs, n)
	decoded, err = snappy.Decode(*dbuf, body)
	if err != nil {
		return nil, nil, release, badf("decode snappy body: %v", err)
	}
	return body, decoded, release, nil
}

func (h *RemoteWriteHandler) reject(w http.ResponseWriter, msgType remoteapi.WriteMessageType, err error) {
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
	http.Error(w, err.Error(), http.StatusBadRequest)
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

// NewOTLPHandler returns the handler for POST /api/v1/otlp/v1/metrics:
// Prometheus v3's OTLP receiver with its default translation settings, with
// the body bounded by MaxBodyBytes.
func NewOTLPHandler(store storage.AppendableV2, opts RemoteWriteOptions) (http.Handler, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	cfg := config.DefaultConfig
	h := remote.NewOTLPWriteHandler(opts.Logger, opts.Registerer, store, func() config.Config { return cfg },
		remote.OTLPOptions{LookbackDelta: opts.LookbackDelta})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.ContentLength > opts.MaxBodyBytes {
			http.Error(w, "request body is larger than "+strconv.FormatInt(opts.MaxBodyBytes, 10)+" bytes (limit set by --write.max-body-bytes)", http.StatusBadRequest)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, opts.MaxBodyBytes)
		h.ServeHTTP(w, r)
	}), nil
}
