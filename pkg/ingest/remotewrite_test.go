package ingest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage/storagetest"
)

const (
	ctV1 = "application/x-protobuf"
	ctV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

func seedV1(t testing.TB) []byte {
	b, err := proto.Marshal(&prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{{
			Labels:    []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "job", Value: "j"}},
			Samples:   []prompb.Sample{{Timestamp: 1, Value: 1}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t"}}, Value: 1, Timestamp: 1}},
		}},
		Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "m", Help: "h"}},
	})
	require.NoError(t, err)
	return b
}

func seedV2(t testing.TB) []byte {
	b, err := proto.Marshal(&writev2.Request{
		Symbols: []string{"", "__name__", "m", "job", "j", "help"},
		Timeseries: []writev2.TimeSeries{{
			LabelsRefs: []uint32{1, 2, 3, 4},
			Samples:    []writev2.Sample{{Timestamp: 1, Value: 1}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: 5},
		}},
	})
	require.NoError(t, err)
	return b
}

// TestValidatorAcceptsWhatPrometheusSends: well-formed requests of both
// versions pass, and v1 metadata is collected.
func TestValidatorAcceptsWhatPrometheusSends(t *testing.T) {
	v := validator{limits: DefaultRemoteWriteOptions().WriteLimits}
	require.NoError(t, v.validateV1(seedV1(t)))
	require.Len(t, v.metadata, 1)
	require.Equal(t, "m", string(v.metadata[0].family))
	require.NoError(t, v.validateV2(seedV2(t)))
	require.NoError(t, v.validateV1(nil), "an empty request is valid")
}

// FuzzRemoteWriteDecoder feeds arbitrary bodies, of both versions, to the
// write handler over a real store. It must answer 204 or 400 (never 5xx,
// never panic); a validator rejection is the answer, word for word; and a
// 204 only ever follows a body that Prometheus' own protobuf types decode.
// (The validator checks labels, symbols and message structure; the inside of
// samples and histograms is left to Prometheus' decoder, which answers 400.)
func FuzzRemoteWriteDecoder(f *testing.F) {
	f.Add(seedV1(f), false)
	f.Add(seedV2(f), true)
	f.Add(seedV2(f), false)
	f.Add(seedV1(f), true)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00}, false)
	f.Add([]byte{0x22, 0x01, 0xff}, true)
	f.Add([]byte{0x2a, 0x02, 0x0a, 0x00}, true)

	db := storagetest.New(f)
	opts := DefaultRemoteWriteOptions()
	opts.Registerer = prometheus.NewRegistry()
	h, err := NewRemoteWriteHandler(db, opts)
	require.NoError(f, err)

	f.Fuzz(func(t *testing.T, body []byte, v2 bool) {
		val := validator{limits: opts.WriteLimits}
		ct := ctV1
		var verr, decodeErr error
		if v2 {
			ct = ctV2
			verr = val.validateV2(body)
			decodeErr = proto.Unmarshal(body, &writev2.Request{})
		} else {
			verr = val.validateV1(body)
			decodeErr = proto.Unmarshal(body, &prompb.WriteRequest{})
		}

		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", "snappy")
		rec := httptest.NewRecorder()
		serve(t, h).ServeHTTP(rec, req)
		if verr != nil {
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			require.Equal(t, verr.Error()+"\n", rec.Body.String())
			return
		}
		require.Contains(t, []int{http.StatusNoContent, http.StatusBadRequest}, rec.Code, rec.Body.String())
		if rec.Code == http.StatusNoContent {
			require.NoError(t, decodeErr, "acknowledged a body Prometheus cannot decode")
		}
	})
}
