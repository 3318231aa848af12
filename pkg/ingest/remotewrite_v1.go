package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"
	"unsafe"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/protobuf/encoding/protowire"
)

// Remote write 1.0 is stored in one pass over the wire bytes: the labels of
// a series are checked and hashed where they lie in the body, and a series
// seen before is appended by reference, without building its labels again
// or decoding the request into Prometheus' generated structs. This is the
// part of Prometheus' receiver (storage/remote.writeHandler.write) that
// costs the most CPU per sample, and it keeps its behaviour:
// TestRemoteWriteV1MatchesPrometheus runs Prometheus' own handler on the same
// requests and compares status codes and stored data.
//
//   - all or nothing: the first sample that cannot be appended rolls the
//     whole request back; out-of-order, duplicate, too-old, out-of-bounds
//     (including more than 10 minutes in the future) and invalid histograms
//     are 400, anything else 500;
//   - exemplars that cannot be stored are dropped, not errors;
//   - a 2xx is sent after the commit, which is durable.
//
// Requests that break the label rules get the validator's 400 before
// anything is stored, as for 2.0.

// maxAheadTime is how far in the future a sample may be, as in Prometheus'
// receiver.
const maxAheadTime = 10 * time.Minute

// seriesFinder is a store that finds a series by its labels and hands out
// its reference and labels equal to its own (per request: the function
// resolves the tenant once). A series seen before is then appended by
// reference, without building its labels again; the labels looked up may
// alias memory the caller reuses, and pkg/storage hands them back (it
// interns label strings and keeps no labels.Labels per series), so the
// labels returned are valid while the wire labels are: for this series'
// appends and messages. Without it the receiver builds every series'
// labels and the store looks them up.
type seriesFinder interface {
	SeriesByLabels(ctx context.Context) func(labels.Labels) (storage.SeriesRef, labels.Labels, bool)
}

// yoloString is b as a string without a copy; it must not outlive b.
func yoloString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// v1Batch holds the parts of one series while it is read.
type v1Batch struct {
	samples, histograms, exemplars [][]byte
	sb                             labels.ScratchBuilder
	probe                          labels.Labels // the wire labels, aliasing sb and the body
	ex                             []exemplar.Exemplar
}

// writeV1 stores a decoded remote write 1.0 body and returns the HTTP
// status, and the error to send with it.
func (h *RemoteWriteHandler) writeV1(ctx context.Context, body []byte, v *validator) (int, error) {
	app := h.store.Appender(ctx)
	var find func(labels.Labels) (storage.SeriesRef, labels.Labels, bool)
	if sf, ok := h.store.(seriesFinder); ok {
		find = sf.SeriesByLabels(ctx)
	}
	maxT := timestamp.FromTime(time.Now().Add(maxAheadTime))
	var batch v1Batch
	v.metadata = v.metadata[:0]
	// invalid reruns the validator over the whole body for its message,
	// which names the series and the rule.
	invalid := func() (int, error) {
		_ = app.Rollback()
		err := v.validateV1(body)
		if err == nil {
			err = badf("decode prometheus.WriteRequest: malformed body")
		}
		return http.StatusBadRequest, err
	}
	for b := body; len(b) > 0; {
		f, n, err := nextField(b, "prometheus.WriteRequest")
		if err != nil {
			return invalid()
		}
		b = b[n:]
		switch {
		case f.num == v1TimeSeries && f.typ == protowire.BytesType:
			if !v.wireSeriesV1(f.bytes, &batch) {
				return invalid()
			}
			if code, err := appendSeriesV1(app, find, v, &batch, maxT); err != nil {
				if code == http.StatusBadRequest && errors.Is(err, errInvalidWrite) {
					return invalid()
				}
				_ = app.Rollback()
				return code, err
			}
		case f.num == v1Metadata && f.typ == protowire.BytesType:
			if v.v1Metadata(f.bytes, len(v.metadata)) != nil {
				return invalid()
			}
		default:
			return invalid()
		}
	}
	for _, e := range v.metadata {
		m := metadata.Metadata{Type: v1MetricTypes[e.typ], Help: string(e.help), Unit: string(e.unit)}
		if _, err := app.UpdateMetadata(0, labels.FromStrings(labels.MetricName, string(e.family)), m); err != nil {
			_ = app.Rollback()
			return http.StatusInternalServerError, fmt.Errorf("store metadata of %q: %w", e.family, err)
		}
	}
	if err := app.Commit(); err != nil {
		return http.StatusInternalServerError, err
	}
	return http.StatusNoContent, nil
}

// wireSeriesV1 splits a prometheus.TimeSeries into its labels (in
// v.labels, aliasing the body) and the encoded samples, histograms and
// exemplars. It reports false for anything malformed. Fields are read
// with one-byte tags and lengths inline, the layout every sender produces.
func (v *validator) wireSeriesV1(b []byte, batch *v1Batch) bool {
	v.labels = v.labels[:0]
	batch.samples, batch.histograms, batch.exemplars = batch.samples[:0], batch.histograms[:0], batch.exemplars[:0]
	for len(b) > 0 {
		payload, num, rest, ok := lengthDelimited(b)
		if !ok {
			return false
		}
		b = rest
		switch num {
		case v1SeriesLabels:
			if len(v.labels) >= v.limits.MaxLabelsPerSeries {
				return false
			}
			l, ok := wireLabelOf(payload)
			if !ok {
				return false
			}
			v.labels = append(v.labels, l)
		case v1SeriesSamples:
			batch.samples = append(batch.samples, payload)
		case v1SeriesHistograms:
			batch.histograms = append(batch.histograms, payload)
		case v1SeriesExemplars:
			batch.exemplars = append(batch.exemplars, payload)
		default:
			return false
		}
	}
	return true
}

// lengthDelimited reads one length-delimited field with a tag of one byte.
func lengthDelimited(b []byte) (payload []byte, num protowire.Number, rest []byte, ok bool) {
	if len(b) < 2 || b[0]&0x80 != 0 || protowire.Type(b[0]&7) != protowire.BytesType {
		return nil, 0, nil, false
	}
	num = protowire.Number(b[0] >> 3)
	var l uint64
	n := 1
	if b[1] < 0x80 {
		l, n = uint64(b[1]), 1
	} else if l, n = protowire.ConsumeVarint(b[1:]); n < 0 {
		return nil, 0, nil, false
	}
	start := 1 + n
	if uint64(len(b)-start) < l {
		return nil, 0, nil, false
	}
	end := start + int(l)
	return b[start:end], num, b[end:], true
}

// wireLabelOf reads a prometheus.Label (name = 1, value = 2).
func wireLabelOf(b []byte) (wireLabel, bool) {
	var l wireLabel
	for len(b) > 0 {
		payload, num, rest, ok := lengthDelimited(b)
		if !ok {
			return l, false
		}
		b = rest
		switch num {
		case 1:
			l.name = payload
		case 2:
			l.value = payload
		default:
			return l, false
		}
	}
	return l, true
}

// decodeSample reads a prometheus.Sample: value (fixed64 double, field 1)
// and timestamp (int64 varint, field 2).
func decodeSample(b []byte) (t int64, v float64, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			if len(b) < 8 {
				return 0, 0, false
			}
			v = math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
		case num == 2 && typ == protowire.VarintType:
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, 0, false
			}
			t = int64(x)
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return 0, 0, false
			}
			b = b[m:]
		}
	}
	return t, v, true
}

// appendSeriesV1 appends the samples, histograms and exemplars of one
// series whose labels passed the checks.
func appendSeriesV1(app storage.Appender, find func(labels.Labels) (storage.SeriesRef, labels.Labels, bool), v *validator, batch *v1Batch, maxT int64) (int, error) {
	wire := v.labels
	var (
		ref  storage.SeriesRef
		lset labels.Labels
		ok   bool
	)
	if find != nil {
		// The wire labels as labels, aliasing the body: only compared.
		batch.sb.Reset()
		for _, l := range wire {
			batch.sb.Add(yoloString(l.name), yoloString(l.value))
		}
		batch.sb.Overwrite(&batch.probe)
		ref, lset, ok = find(batch.probe)
	}
	if !ok {
		// Labels identical to a series stored before passed these checks.
		if err := v.checkLabels(""); err != nil {
			return http.StatusBadRequest, err
		}
		batch.sb.Reset()
		for _, l := range wire {
			batch.sb.Add(string(l.name), string(l.value))
		}
		lset = batch.sb.Labels()
	}
	var err error
	for _, sb := range batch.samples {
		t, val, okS := decodeSample(sb)
		if !okS {
			return http.StatusBadRequest, badf("series %s: malformed sample", lset.String())
		}
		if t > maxT {
			return http.StatusBadRequest, fmt.Errorf("%w: timestamp is too far in the future for series %s", storage.ErrOutOfBounds, lset.String())
		}
		if ref, err = app.Append(ref, lset, t, val); err != nil {
			return appendStatus(err), err
		}
	}
	for _, hb := range batch.histograms {
		var hp prompb.Histogram
		if err := hp.Unmarshal(hb); err != nil {
			return http.StatusBadRequest, badf("series %s: decode histogram: %v", lset.String(), err)
		}
		if hp.Timestamp > maxT {
			return http.StatusBadRequest, fmt.Errorf("%w: timestamp is too far in the future for series %s", storage.ErrOutOfBounds, lset.String())
		}
		if hp.IsFloatHistogram() {
			fh := hp.ToFloatHistogram()
			if histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > histogram.ExponentialSchemaMax {
				if err := fh.ReduceResolution(histogram.ExponentialSchemaMax); err != nil {
					return http.StatusBadRequest, err
				}
			}
			ref, err = app.AppendHistogram(ref, lset, hp.Timestamp, nil, fh)
		} else {
			ih := hp.ToIntHistogram()
			if histogram.IsExponentialSchemaReserved(ih.Schema) && ih.Schema > histogram.ExponentialSchemaMax {
				if err := ih.ReduceResolution(histogram.ExponentialSchemaMax); err != nil {
					return http.StatusBadRequest, err
				}
			}
			ref, err = app.AppendHistogram(ref, lset, hp.Timestamp, ih, nil)
		}
		if err != nil {
			return appendStatus(err), err
		}
	}
	// A series with exemplars only (Prometheus sends each exemplar so) has
	// no reference unless the store had the series: the store looks it up
	// by its labels, as in Prometheus' receiver, and drops the exemplars of
	// a series it does not have.
	if len(batch.exemplars) > 0 {
		batch.ex = batch.ex[:0]
		for _, xb := range batch.exemplars {
			var ep prompb.Exemplar
			if err := ep.Unmarshal(xb); err != nil {
				return http.StatusBadRequest, badf("series %s: decode exemplar: %v", lset.String(), err)
			}
			batch.ex = append(batch.ex, ep.ToExemplar(&batch.sb, nil))
		}
		slices.SortFunc(batch.ex, exemplar.Compare)
		for _, ex := range batch.ex {
			if ex.Ts > maxT {
				continue // dropped, as Prometheus drops future exemplars
			}
			// Exemplar storage errors do not fail the request (Prometheus).
			if r, err := app.AppendExemplar(ref, lset, ex); err == nil && ref == 0 {
				ref = r
			}
		}
	}
	return 0, nil
}

// appendStatus is the status Prometheus' receiver answers for an append
// error.
func appendStatus(err error) int {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrOutOfBounds),
		errors.Is(err, storage.ErrDuplicateSampleForTimestamp), errors.Is(err, storage.ErrTooOldSample):
		return http.StatusBadRequest
	case isHistogramValidationError(err):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func isHistogramValidationError(err error) bool {
	var e histogram.Error
	return errors.As(err, &e)
}
