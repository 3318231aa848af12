package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestBadWrites sends malformed remote-write requests: each gets the
// documented status and a message naming the problem, nothing stored
// changes, and the server stays up.
func TestBadWrites(t *testing.T) {
	srv := servertest.Start(t, func(o *serverOptions) { o.Write.MaxBodyBytes = 1 << 20 })
	base := baseTime()
	good := func(name string, v float64, ts time.Time) prompb.TimeSeries {
		return prompb.TimeSeries{
			Labels:  labelsV1("__name__", name, "job", "j"),
			Samples: []prompb.Sample{{Timestamp: ts.UnixMilli(), Value: v}},
		}
	}
	// What is stored before: one series with two samples.
	r := writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		good("kept", 1, base), good("kept", 2, base.Add(time.Minute)),
	}})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	stored := func() string {
		return get(t, srv.URL, "/api/v1/query_range", url.Values{
			"query": {`{job=~".+"}`}, "start": {unixString(base.Add(-time.Hour))},
			"end": {unixString(base.Add(time.Hour))}, "step": {"30"},
		}).body
	}
	before := stored()
	require.Contains(t, before, `"kept"`)

	v1 := func(ts ...prompb.TimeSeries) []byte { return encodeV1(t, &prompb.WriteRequest{Timeseries: ts}) }
	series := func(nv ...string) prompb.TimeSeries {
		return prompb.TimeSeries{Labels: labelsV1(nv...), Samples: []prompb.Sample{{Timestamp: base.UnixMilli(), Value: 5}}}
	}
	v2Body := func(symbols []string, refs ...uint32) []byte {
		return encodeV2(t, &writev2.Request{Symbols: symbols, Timeseries: []writev2.TimeSeries{{
			LabelsRefs: refs, Samples: []writev2.Sample{{Timestamp: base.UnixMilli(), Value: 5}},
		}}})
	}
	rawV2, err := proto.Marshal(&writev2.Request{Symbols: []string{"", "__name__", "bad"}, Timeseries: []writev2.TimeSeries{{
		LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Timestamp: base.UnixMilli(), Value: 5}},
	}}})
	require.NoError(t, err)
	rawV1, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series("__name__", "bad")}})
	require.NoError(t, err)
	manyLabels := []string{"__name__", "bad"}
	for i := range 10_000 {
		manyLabels = append(manyLabels, fmt.Sprintf("l%05d", i), "v")
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rnd.UintN(256))
	}
	// A snappy header claiming 64 MiB, followed by a little data.
	bomb := binary.AppendUvarint(nil, 64<<20)
	bomb = append(bomb, 0x00, 'x')

	for _, tc := range []struct {
		name        string
		contentType string
		encoding    string
		body        []byte
		code        int
		msg         string
	}{
		{"no snappy", contentTypeV1, "snappy", rawV1, 400, "decode snappy body"},
		{"invalid snappy", contentTypeV1, "snappy", random, 400, "decode snappy body"},
		{"random protobuf", contentTypeV1, "snappy", snappy.Encode(nil, random), 400, "decode prometheus.WriteRequest"},
		{"random protobuf v2", contentTypeV2, "snappy", snappy.Encode(nil, random), 400, "io.prometheus.write.v2.Request"},
		{"v2 body, v1 content type", contentTypeV1, "snappy", snappy.Encode(nil, rawV2), 400, "unknown field 4 (is this an io.prometheus.write.v2.Request sent with a remote write 1.0 Content-Type?"},
		{"v1 body, v2 content type", contentTypeV2, "snappy", snappy.Encode(nil, rawV1), 400, "unknown field 1 (is this a prometheus.WriteRequest sent with the remote write 2.0 Content-Type?"},
		{"no labels", contentTypeV1, "snappy", v1(prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: base.UnixMilli(), Value: 1}}}), 400, "timeseries[0] has no labels"},
		{"empty label name", contentTypeV1, "snappy", v1(series("", "x", "__name__", "bad")), 400, `series {="x", __name__="bad"}: label 0 has an empty name`},
		{"empty label value", contentTypeV1, "snappy", v1(series("__name__", "bad", "job", "")), 400, `series {__name__="bad", job=""}: label "job" has an empty value`},
		{"duplicate labels", contentTypeV1, "snappy", v1(series("__name__", "bad", "job", "a", "job", "b")), 400, `duplicate label name "job"`},
		{"unsorted labels", contentTypeV1, "snappy", v1(series("job", "a", "__name__", "bad")), 400, `labels are not sorted by name: "__name__" comes after "job"`},
		{"missing __name__", contentTypeV1, "snappy", v1(series("job", "a")), 400, `series {job="a"} has no __name__ label`},
		{"non-UTF-8 label name", contentTypeV1, "snappy", v1(series("__name__", "bad", "j\xffb", "a")), 400, `label name "j\xffb" is not valid UTF-8`},
		{"non-UTF-8 label value", contentTypeV1, "snappy", v1(series("__name__", "bad\xfe")), 400, `value of label "__name__" is not valid UTF-8`},
		{"non-UTF-8 v2 symbol", contentTypeV2, "snappy", v2Body([]string{"", "__name__", "bad\xff"}, 1, 2), 400, "symbols[2] is not valid UTF-8"},
		{"v2 symbol ref out of range", contentTypeV2, "snappy", v2Body([]string{"", "__name__", "bad"}, 1, 99), 400, "timeseries[0] label value: symbol reference 99 is out of range (the request has 3 symbols)"},
		{"v2 odd labels_refs", contentTypeV2, "snappy", v2Body([]string{"", "__name__", "bad"}, 1, 2, 1), 400, "labels_refs has an odd length 3"},
		{"v2 missing __name__", contentTypeV2, "snappy", v2Body([]string{"", "job", "a"}, 1, 2), 400, `series {job="a"} has no __name__ label`},
		{"10k labels", contentTypeV1, "snappy", v1(series(manyLabels...)), 400, "timeseries[0] has more than 128 labels (limit set by --write.max-labels-per-series)"},
		{"huge label value", contentTypeV1, "snappy", v1(series("__name__", "bad", "big", strings.Repeat("x", 100_000))), 400, `value of label "big" is 100000 bytes, longer than 16384 (limit set by --write.max-label-value-bytes)`},
		{"oversized body", contentTypeV1, "snappy", bytes.Repeat([]byte{0}, 2<<20), 400, "request body is larger than 1048576 bytes (limit set by --write.max-body-bytes)"},
		{"snappy bomb", contentTypeV1, "snappy", bomb, 400, "snappy body decodes to 67108864 bytes, more than the 33554432 allowed"},
		{"unknown content type", "application/json", "snappy", v1(series("__name__", "bad")), 415, "expected application/x-protobuf as the first (media) part"},
		{"unknown proto message", "application/x-protobuf;proto=foo.Bar", "snappy", v1(series("__name__", "bad")), 415, "foo.Bar"},
		{"unknown encoding", contentTypeV1, "gzip", v1(series("__name__", "bad")), 415, "gzip encoding (compression) is not accepted by this server"},
		{"too old (outside the out-of-order window)", contentTypeV1, "snappy", v1(good("kept", 9, base.Add(-time.Hour))), 400, "too old"},
		{"too far in the future", contentTypeV1, "snappy", v1(good("bad", 9, time.Now().Add(time.Hour))), 400, "out of bounds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", tc.contentType)
			req.Header.Set("Content-Encoding", tc.encoding)
			r := do(t, req)
			require.Equal(t, tc.code, r.code, r.body)
			require.Contains(t, r.body, tc.msg)
			if tc.contentType == contentTypeV2 && tc.code == 400 {
				require.Equal(t, "0", r.header.Get("X-Prometheus-Remote-Write-Samples-Written"))
			}
			require.Equal(t, before, stored(), "stored data changed")
			require.Equal(t, http.StatusOK, get(t, srv.URL, "/-/healthy", nil).code)
		})
	}
	require.JSONEq(t, `{"status":"success","data":["kept"]}`, get(t, srv.URL, "/api/v1/label/__name__/values", nil).body)
}

// TestBadQueries sends malformed queries: each gets Prometheus' status,
// error type and message.
func TestBadQueries(t *testing.T) {
	srv := servertest.Start(t, func(o *serverOptions) { o.Query.MaxSamples = 3 })
	base := baseTime()
	var ts []prompb.TimeSeries
	for i := range 5 {
		ts = append(ts, prompb.TimeSeries{
			Labels:  labelsV1("__name__", "m", "i", strconv.Itoa(i)),
			Samples: []prompb.Sample{{Timestamp: base.UnixMilli(), Value: float64(i)}},
		})
	}
	require.Equal(t, http.StatusNoContent, writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: ts}).code)
	t0 := unixString(base)

	for _, tc := range []struct {
		name   string
		path   string
		params url.Values
		code   int
		typ    string
		msg    string
	}{
		{"syntax error", "/api/v1/query", url.Values{"query": {"sum(m"}}, 400, "bad_data", `invalid parameter \"query\": 1:6: parse error: unclosed left parenthesis`},
		{"empty query", "/api/v1/query", url.Values{}, 400, "bad_data", "no expression found in input"},
		{"bad time", "/api/v1/query", url.Values{"query": {"m"}, "time": {"yesterday"}}, 400, "bad_data", `invalid parameter \"time\"`},
		{"step zero", "/api/v1/query_range", url.Values{"query": {"m"}, "start": {t0}, "end": {t0}, "step": {"0"}}, 400, "bad_data", "zero or negative query resolution step widths are not accepted. Try a positive integer"},
		{"step negative", "/api/v1/query_range", url.Values{"query": {"m"}, "start": {t0}, "end": {t0}, "step": {"-15"}}, 400, "bad_data", "zero or negative query resolution step widths are not accepted"},
		{"end before start", "/api/v1/query_range", url.Values{"query": {"m"}, "start": {t0}, "end": {"0"}, "step": {"15"}}, 400, "bad_data", "end timestamp must not be before start time"},
		{"too many points", "/api/v1/query_range", url.Values{"query": {"m"}, "start": {"0"}, "end": {"100000"}, "step": {"1"}}, 400, "bad_data", "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"},
		{"match everything", "/api/v1/query", url.Values{"query": {`{__name__=~".*"}`}}, 400, "bad_data", "vector selector must contain at least one non-empty matcher"},
		{"series match everything", "/api/v1/series", url.Values{"match[]": {`{__name__=~".*"}`}}, 400, "bad_data", "match[] must contain at least one non-empty matcher"},
		{"too many samples", "/api/v1/query", url.Values{"query": {"m"}, "time": {t0}}, 422, "execution", "query processing would load too many samples into memory in query execution"},
		{"timeout", "/api/v1/query", url.Values{"query": {"m"}, "time": {t0}, "timeout": {"0.000000001"}}, 503, "timeout", "query timed out in"},
		{"bad metadata limit", "/api/v1/metadata", url.Values{"limit": {"x"}}, 400, "bad_data", "limit must be a number"},
		{"bad tsdb limit", "/api/v1/status/tsdb", url.Values{"limit": {"0"}}, 400, "bad_data", "limit must be a positive number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, srv.URL, tc.path, tc.params)
			require.Equal(t, tc.code, r.code, r.body)
			require.Contains(t, r.body, `"status":"error","errorType":"`+tc.typ+`"`)
			require.Contains(t, r.body, tc.msg)
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
		})
	}
	require.Equal(t, http.StatusOK, get(t, srv.URL, "/-/ready", nil).code)
}
