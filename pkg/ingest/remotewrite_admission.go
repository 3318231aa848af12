package ingest

import (
	"context"
	"net/http"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"google.golang.org/protobuf/encoding/protowire"
)

// WriteQuota is a store that refuses writes over its tenant's quota
// before anything of a request is decoded or stored; the server gives
// remote write such a store (pkg/limits.Appendable). A handler over a
// store without it admits everything with its own WriteLimits. Refusals
// are errors the handler returns as they are, for the server to answer.
type WriteQuota interface {
	// ReserveWriteBytes is asked, before a body is decoded, for the
	// memory its bytes (compressed and decoded) take while the request is
	// served; release is called when the request ends.
	ReserveWriteBytes(ctx context.Context, n int64) (release func(), err error)
	// AdmitSamples is asked once a body is decoded, before anything of it
	// is stored, whether its samples (floats and histograms) may be
	// stored; count counts them (a pass over the body, called only when
	// the tenant has a limit). An error refuses the whole request.
	AdmitSamples(ctx context.Context, count func() int) error
	// LabelLimits are the label limits of ctx's tenant: labels per series,
	// bytes of a name and of a value; zero keeps the handler's.
	LabelLimits(ctx context.Context) (names, nameBytes, valueBytes int)
}

// quota is the store's WriteQuota, or nil.
func (h *RemoteWriteHandler) quota() WriteQuota {
	q, _ := h.store.(WriteQuota)
	return q
}

// writeLimits returns the label limits of ctx's tenant.
func (h *RemoteWriteHandler) writeLimits(ctx context.Context) WriteLimits {
	d := h.opts.WriteLimits
	q := h.quota()
	if q == nil {
		return d
	}
	names, nameBytes, valueBytes := q.LabelLimits(ctx)
	if names > 0 {
		d.MaxLabelsPerSeries = names
	}
	if nameBytes > 0 {
		d.MaxLabelNameBytes = nameBytes
	}
	if valueBytes > 0 {
		d.MaxLabelValueBytes = valueBytes
	}
	return d
}

// admit counts the samples of a decoded body and asks the quota. A body
// that does not decode is left to the validator, which names the fault.
func (h *RemoteWriteHandler) admit(ctx context.Context, msgType remoteapi.WriteMessageType, decoded []byte) error {
	q := h.quota()
	if q == nil {
		return nil
	}
	return q.AdmitSamples(ctx, func() int {
		if msgType == remoteapi.WriteV2MessageType {
			return countSamples(decoded, v2TimeSeries, v2SeriesSamples, v2SeriesHistograms)
		}
		return countSamples(decoded, v1TimeSeries, v1SeriesSamples, v1SeriesHistograms)
	})
}

// refused returns err, a refusal of the store or its quota, for the
// server to answer (with its status and Retry-After); nothing was stored,
// which a 2.0 sender reads from the written-counts headers.
func refused(w http.ResponseWriter, msgType remoteapi.WriteMessageType, err error) error {
	if msgType == remoteapi.WriteV2MessageType {
		for _, k := range []string{"Samples", "Histograms", "Exemplars"} {
			w.Header().Set("X-Prometheus-Remote-Write-"+k+"-Written", "0")
		}
	}
	return err
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
