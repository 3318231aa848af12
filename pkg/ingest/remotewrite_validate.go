package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// WriteLimits bound what one series of a remote-write request may carry.
type WriteLimits struct {
	MaxLabelsPerSeries int // default 128
	MaxLabelNameBytes  int // default 1024
	MaxLabelValueBytes int // default 16 KiB
}

// errInvalidWrite marks a request rejected before anything was stored.
var errInvalidWrite = errors.New("ingest: invalid remote write request")

// badRequest is a validation failure; its message names the series and the
// label or field at fault.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }
func (e *badRequest) Unwrap() error { return errInvalidWrite }

func badf(format string, args ...any) error {
	return &badRequest{msg: fmt.Sprintf(format, args...)}
}

// wireLabel is one label as it sits in the request body (no copy).
type wireLabel struct{ name, value []byte }

// validator walks a decoded (snappy-free) remote-write body with protowire
// and checks what Prometheus' receiver lets through or silently drops:
// unknown top-level fields (a body of the other protocol version), empty,
// duplicate or unsorted labels, a missing __name__, invalid UTF-8, symbol
// references out of range, and the size limits. It allocates only its label
// scratch space, so it costs little next to the protobuf decoding that
// follows.
type validator struct {
	limits  WriteLimits
	labels  []wireLabel
	symbols [][]byte
	// metadata collects the v1 metadata entries, stored by the handler.
	metadata []metadataEntry
	// exemplarOnly lists the 2.0 series that carry exemplars and neither
	// samples nor histograms (remotewrite_v2_exemplars.go).
	exemplarOnly []int
}

// metadataEntry is one prometheus.MetricMetadata of a v1 request.
type metadataEntry struct {
	typ                int32
	family, help, unit []byte
}

// Wire layouts (prompb/types.proto and prompb/io/prometheus/write/v2/types.proto).
const (
	v1TimeSeries = 1
	v1Metadata   = 3

	v1SeriesLabels     = 1
	v1SeriesSamples    = 2
	v1SeriesExemplars  = 3
	v1SeriesHistograms = 4

	v2Symbols    = 4
	v2TimeSeries = 5

	v2SeriesLabelsRefs = 1
	v2SeriesSamples    = 2
	v2SeriesHistograms = 3
	v2SeriesExemplars  = 4
	v2SeriesMetadata   = 5
)

// field is one top-level or nested protobuf field.
type field struct {
	num protowire.Number
	typ protowire.Type
	// for BytesType: the payload; for VarintType: the value.
	bytes  []byte
	varint uint64
}

// nextField consumes one field from b. what names the message, for errors.
func nextField(b []byte, what string) (field, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return field{}, 0, badf("decode %s: %v", what, protowire.ParseError(n))
	}
	f := field{num: num, typ: typ}
	var m int
	switch typ {
	case protowire.BytesType:
		f.bytes, m = protowire.ConsumeBytes(b[n:])
	case protowire.VarintType:
		f.varint, m = protowire.ConsumeVarint(b[n:])
	default:
		m = protowire.ConsumeFieldValue(num, typ, b[n:])
	}
	if m < 0 {
		return field{}, 0, badf("decode %s: field %d: %v", what, num, protowire.ParseError(m))
	}
	return f, n + m, nil
}

func wantBytes(f field, what string) error {
	if f.typ != protowire.BytesType {
		return badf("decode %s: field %d has wire type %d, want length-delimited", what, f.num, f.typ)
	}
	return nil
}

// validateV1 checks a prometheus.WriteRequest.
func (v *validator) validateV1(b []byte) error {
	v.metadata = v.metadata[:0]
	series := 0
	for len(b) > 0 {
		f, n, err := nextField(b, "prometheus.WriteRequest")
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case v1TimeSeries:
			if err := wantBytes(f, "prometheus.WriteRequest"); err != nil {
				return err
			}
			if err := v.v1Series(f.bytes, series); err != nil {
				return err
			}
			series++
		case v1Metadata:
			if err := wantBytes(f, "prometheus.WriteRequest"); err != nil {
				return err
			}
			if err := v.v1Metadata(f.bytes, len(v.metadata)); err != nil {
				return err
			}
		default:
			hint := ""
			if f.num == v2Symbols || f.num == v2TimeSeries {
				hint = " (is this an io.prometheus.write.v2.Request sent with a remote write 1.0 Content-Type? Send Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request)"
			}
			return badf("decode prometheus.WriteRequest: unknown field %d%s", f.num, hint)
		}
	}
	return nil
}

func (v *validator) v1Series(b []byte, idx int) error {
	what := fmt.Sprintf("timeseries[%d]", idx)
	v.labels = v.labels[:0]
	for len(b) > 0 {
		f, n, err := nextField(b, what)
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case v1SeriesLabels:
			if err := wantBytes(f, what); err != nil {
				return err
			}
			if len(v.labels) >= v.limits.MaxLabelsPerSeries {
				return badf("%s has more than %d labels (limit set by --write.max-labels-per-series)", what, v.limits.MaxLabelsPerSeries)
			}
			l, err := decodeV1Label(f.bytes, what)
			if err != nil {
				return err
			}
			v.labels = append(v.labels, l)
		case v1SeriesSamples, v1SeriesExemplars, v1SeriesHistograms:
			if err := wantBytes(f, what); err != nil {
				return err
			}
		default:
			return badf("decode %s: unknown field %d of prometheus.TimeSeries", what, f.num)
		}
	}
	return v.checkLabels(what)
}

func decodeV1Label(b []byte, what string) (wireLabel, error) {
	var l wireLabel
	for len(b) > 0 {
		f, n, err := nextField(b, what+" label")
		if err != nil {
			return l, err
		}
		b = b[n:]
		switch f.num {
		case 1:
			if err := wantBytes(f, what+" label"); err != nil {
				return l, err
			}
			l.name = f.bytes
		case 2:
			if err := wantBytes(f, what+" label"); err != nil {
				return l, err
			}
			l.value = f.bytes
		default:
			return l, badf("decode %s label: unknown field %d of prometheus.Label", what, f.num)
		}
	}
	return l, nil
}

func (v *validator) v1Metadata(b []byte, idx int) error {
	what := fmt.Sprintf("metadata[%d]", idx)
	var m metadataEntry
	for len(b) > 0 {
		f, n, err := nextField(b, what)
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case 1:
			if f.typ != protowire.VarintType {
				return badf("decode %s: type has wire type %d, want varint", what, f.typ)
			}
			m.typ = int32(f.varint)
		case 2, 4, 5:
			if err := wantBytes(f, what); err != nil {
				return err
			}
			if !utf8.Valid(f.bytes) {
				return badf("%s: field %d is not valid UTF-8", what, f.num)
			}
			switch f.num {
			case 2:
				m.family = f.bytes
			case 4:
				m.help = f.bytes
			case 5:
				m.unit = f.bytes
			}
		default:
			return badf("decode %s: unknown field %d of prometheus.MetricMetadata", what, f.num)
		}
	}
	if len(m.family) == 0 {
		return badf("%s: metric_family_name is empty", what)
	}
	if m.typ < 0 || m.typ > 7 {
		return badf("%s (%q): unknown metric type %d", what, m.family, m.typ)
	}
	v.metadata = append(v.metadata, m)
	return nil
}

// validateV2 checks an io.prometheus.write.v2.Request.
func (v *validator) validateV2(b []byte) error {
	// Symbols may come after the series on the wire: collect them first.
	v.symbols = v.symbols[:0]
	for rest := b; len(rest) > 0; {
		f, n, err := nextField(rest, "io.prometheus.write.v2.Request")
		if err != nil {
			return err
		}
		rest = rest[n:]
		switch f.num {
		case v2Symbols:
			if err := wantBytes(f, "io.prometheus.write.v2.Request"); err != nil {
				return err
			}
			if !utf8.Valid(f.bytes) {
				return badf("symbols[%d] is not valid UTF-8: %q", len(v.symbols), truncate(f.bytes))
			}
			v.symbols = append(v.symbols, f.bytes)
		case v2TimeSeries:
			if err := wantBytes(f, "io.prometheus.write.v2.Request"); err != nil {
				return err
			}
		default:
			hint := ""
			if f.num == v1TimeSeries || f.num == v1Metadata {
				hint = " (is this a prometheus.WriteRequest sent with the remote write 2.0 Content-Type? Send Content-Type: application/x-protobuf)"
			}
			return badf("decode io.prometheus.write.v2.Request: unknown field %d%s", f.num, hint)
		}
	}
	series := 0
	v.exemplarOnly = v.exemplarOnly[:0]
	for len(b) > 0 {
		f, n, _ := nextField(b, "")
		b = b[n:]
		if f.num == v2TimeSeries {
			if err := v.v2Series(f.bytes, series); err != nil {
				return err
			}
			series++
		}
	}
	return nil
}

func (v *validator) symbol(ref uint64, what string) ([]byte, error) {
	if ref >= uint64(len(v.symbols)) {
		return nil, badf("%s: symbol reference %d is out of range (the request has %d symbols)", what, ref, len(v.symbols))
	}
	return v.symbols[ref], nil
}

func (v *validator) v2Series(b []byte, idx int) error {
	what := fmt.Sprintf("timeseries[%d]", idx)
	v.labels = v.labels[:0]
	var refs []uint64
	data, exemplars := false, false
	for len(b) > 0 {
		f, n, err := nextField(b, what)
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case v2SeriesLabelsRefs:
			switch f.typ {
			case protowire.VarintType: // unpacked
				refs = append(refs, f.varint)
			case protowire.BytesType: // packed
				for p := f.bytes; len(p) > 0; {
					r, m := protowire.ConsumeVarint(p)
					if m < 0 {
						return badf("decode %s labels_refs: %v", what, protowire.ParseError(m))
					}
					refs = append(refs, r)
					p = p[m:]
				}
			default:
				return badf("decode %s: labels_refs has wire type %d", what, f.typ)
			}
			if len(refs) > 2*v.limits.MaxLabelsPerSeries {
				return badf("%s has more than %d labels (limit set by --write.max-labels-per-series)", what, v.limits.MaxLabelsPerSeries)
			}
		case v2SeriesSamples, v2SeriesHistograms:
			if err := wantBytes(f, what); err != nil {
				return err
			}
			data = true
		case v2SeriesExemplars:
			if err := wantBytes(f, what); err != nil {
				return err
			}
			exemplars = true
			if err := v.v2ExemplarRefs(f.bytes, what); err != nil {
				return err
			}
		case v2SeriesMetadata:
			if err := wantBytes(f, what); err != nil {
				return err
			}
			if err := v.v2MetadataRefs(f.bytes, what); err != nil {
				return err
			}
		default:
			return badf("decode %s: unknown field %d of io.prometheus.write.v2.TimeSeries", what, f.num)
		}
	}
	if len(refs)%2 != 0 {
		return badf("%s: labels_refs has an odd length %d; it must hold name and value pairs", what, len(refs))
	}
	for i := 0; i < len(refs); i += 2 {
		name, err := v.symbol(refs[i], what+" label name")
		if err != nil {
			return err
		}
		value, err := v.symbol(refs[i+1], what+" label value")
		if err != nil {
			return err
		}
		v.labels = append(v.labels, wireLabel{name: name, value: value})
	}
	if exemplars && !data {
		v.exemplarOnly = append(v.exemplarOnly, idx)
	}
	return v.checkLabels(what)
}

func (v *validator) v2ExemplarRefs(b []byte, what string) error {
	what += " exemplar"
	for len(b) > 0 {
		f, n, err := nextField(b, what)
		if err != nil {
			return err
		}
		b = b[n:]
		if f.num != 1 {
			continue
		}
		check := func(r uint64) error { _, err := v.symbol(r, what+" labels_refs"); return err }
		switch f.typ {
		case protowire.VarintType:
			if err := check(f.varint); err != nil {
				return err
			}
		case protowire.BytesType:
			for p := f.bytes; len(p) > 0; {
				r, m := protowire.ConsumeVarint(p)
				if m < 0 {
					return badf("decode %s labels_refs: %v", what, protowire.ParseError(m))
				}
				if err := check(r); err != nil {
					return err
				}
				p = p[m:]
			}
		}
	}
	return nil
}

func (v *validator) v2MetadataRefs(b []byte, what string) error {
	what += " metadata"
	for len(b) > 0 {
		f, n, err := nextField(b, what)
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case 3, 4:
			if f.typ != protowire.VarintType {
				return badf("decode %s: field %d has wire type %d, want varint", what, f.num, f.typ)
			}
			name := "help_ref"
			if f.num == 4 {
				name = "unit_ref"
			}
			if _, err := v.symbol(f.varint, what+" "+name); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLabels applies the label rules of the remote-write 1.0 spec ("Label
// names MUST be unique and sorted ... MUST NOT contain any empty label names
// or values", every series has a __name__) to both versions, and the limits.
func (v *validator) checkLabels(what string) error {
	ls := v.labels
	if len(ls) == 0 {
		return badf("%s has no labels", what)
	}
	hasName := false
	for i, l := range ls {
		if !utf8.Valid(l.name) {
			return badf("series %s: label name %q is not valid UTF-8", v.seriesString(), truncate(l.name))
		}
		if !utf8.Valid(l.value) {
			return badf("series %s: value of label %q is not valid UTF-8: %q", v.seriesString(), truncate(l.name), truncate(l.value))
		}
		if len(l.name) == 0 {
			return badf("series %s: label %d has an empty name", v.seriesString(), i)
		}
		if len(l.value) == 0 {
			return badf("series %s: label %q has an empty value", v.seriesString(), l.name)
		}
		if len(l.name) > v.limits.MaxLabelNameBytes {
			return badf("series %s: label name %q is longer than %d bytes (limit set by --write.max-label-name-bytes)", v.seriesString(), truncate(l.name), v.limits.MaxLabelNameBytes)
		}
		if len(l.value) > v.limits.MaxLabelValueBytes {
			return badf("series %s: value of label %q is %d bytes, longer than %d (limit set by --write.max-label-value-bytes)", v.seriesString(), truncate(l.name), len(l.value), v.limits.MaxLabelValueBytes)
		}
		if i > 0 {
			switch c := bytes.Compare(ls[i-1].name, l.name); {
			case c == 0:
				return badf("series %s: duplicate label name %q", v.seriesString(), l.name)
			case c > 0:
				return badf("series %s: labels are not sorted by name: %q comes after %q", v.seriesString(), l.name, ls[i-1].name)
			}
		}
		if string(l.name) == "__name__" {
			hasName = true
		}
	}
	if !hasName {
		return badf("series %s has no __name__ label", v.seriesString())
	}
	return nil
}

// seriesString renders the labels being checked for an error message, cut
// to a readable length.
func (v *validator) seriesString() string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range v.labels {
		if sb.Len() > 200 {
			fmt.Fprintf(&sb, ", …%d more", len(v.labels)-i)
			break
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		if utf8.Valid(l.name) {
			fmt.Fprintf(&sb, "%s=%q", truncate(l.name), truncate(l.value))
		} else {
			fmt.Fprintf(&sb, "%q=%q", truncate(l.name), truncate(l.value))
		}
	}
	sb.WriteByte('}')
	return sb.String()
}

// truncate cuts b for an error message.
func truncate(b []byte) string {
	const limit = 64
	if len(b) <= limit {
		return string(b)
	}
	return string(b[:limit]) + "…"
}
