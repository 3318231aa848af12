package ingest

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"google.golang.org/protobuf/encoding/protowire"
)

// WriteAdmission applies per-tenant limits to remote write. The server
// sets it in RemoteWriteOptions.Admission; nil admits everything with the
// handler's WriteLimits.
type WriteAdmission interface {
	// WriteLimits returns the label limits of ctx's tenant; defaults are
	// the handler's.
	WriteLimits(ctx context.Context, defaults WriteLimits) WriteLimits
	// AdmitSamples is asked once a body is decoded, before anything of it
	// is stored, whether its samples (floats and histograms) may be
	// stored; samples counts them (a pass over the body, so call it only
	// when the tenant has a limit). An error refuses the whole request. If
	// the error has an HTTPStatus() int method that is the status (else
	// 429), and a RetryAfterSeconds() int method gives the Retry-After
	// header.
	AdmitSamples(ctx context.Context, samples func() int) error
	// ReserveBytes is asked, before a body is decoded, for the memory
	// its bytes (compressed and decoded) take while the request is
	// served; release is called when the request ends. An error refuses
	// the request as AdmitSamples' does.
	ReserveBytes(ctx context.Context, n int64) (release func(), err error)
}

// writeLimits returns the label limits of ctx's tenant.
func (h *RemoteWriteHandler) writeLimits(ctx context.Context) WriteLimits {
	if h.opts.Admission == nil {
		return h.opts.WriteLimits
	}
	return h.opts.Admission.WriteLimits(ctx, h.opts.WriteLimits)
}

// admit counts the samples of a decoded body and asks the admission. A
// body that does not decode is left to the validator, which names the
// fault.
func (h *RemoteWriteHandler) admit(ctx context.Context, msgType remoteapi.WriteMessageType, decoded []byte) error {
	if h.opts.Admission == nil {
		return nil
	}
	return h.opts.Admission.AdmitSamples(ctx, func() int {
		if msgType == remoteapi.WriteV2MessageType {
			return countSamples(decoded, v2TimeSeries, v2SeriesSamples, v2SeriesHistograms)
		}
		return countSamples(decoded, v1TimeSeries, v1SeriesSamples, v1SeriesHistograms)
	})
}

// refuse answers a request the admission refused; nothing was stored.
func (h *RemoteWriteHandler) refuse(w http.ResponseWriter, msgType remoteapi.WriteMessageType, err error) {
	code := http.StatusTooManyRequests
	var withStatus interface{ HTTPStatus() int }
	if errors.As(err, &withStatus) {
		code = withStatus.HTTPStatus()
	}
	var withRetry interface{ RetryAfterSeconds() int }
	if errors.As(err, &withRetry) && withRetry.RetryAfterSeconds() > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(withRetry.RetryAfterSeconds()))
	}
	if msgType == remoteapi.WriteV2MessageType {
		for _, k := range []string{"Samples", "Histograms", "Exemplars"} {
			w.Header().Set("X-Prometheus-Remote-Write-"+k+"-Written", "0")
		}
	}
	http.Error(w, err.Error(), code)
}

// countSamples counts the sample and histogram fields of the series of a
// write request (v1 or v2, by field numbers), skipping everything else.
// It stops at the first malformed field: the validator reports it.
func countSamples(b []byte, seriesField, samplesField, histogramsField protowire.Number) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		if num == seriesField && typ == protowire.BytesType {
			ts, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return n
			}
			b = b[l:]
			for len(ts) > 0 {
				fnum, ftyp, fl := protowire.ConsumeTag(ts)
				if fl < 0 {
					break
				}
				ts = ts[fl:]
				if (fnum == samplesField || fnum == histogramsField) && ftyp == protowire.BytesType {
					n++
				}
				vl := protowire.ConsumeFieldValue(fnum, ftyp, ts)
				if vl < 0 {
					break
				}
				ts = ts[vl:]
			}
			continue
		}
		vl := protowire.ConsumeFieldValue(num, typ, b)
		if vl < 0 {
			return n
		}
		b = b[vl:]
	}
	return n
}
