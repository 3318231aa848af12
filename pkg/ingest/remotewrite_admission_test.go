package ingest

import (
	"errors"
	"net/http"

	"testing"

	"github.com/gogo/protobuf/proto"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// TestCountSamples counts floats and histograms of 1.0 and 2.0 bodies,
// as admission does before storing, without exemplars or metadata.
func TestCountSamples(t *testing.T) {
	v1 := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{Labels: []prompb.Label{{Name: "__name__", Value: "a"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: 1}, {Value: 2, Timestamp: 2}},
				Exemplars: []prompb.Exemplar{{Value: 1, Timestamp: 1}}},
			{Labels: []prompb.Label{{Name: "__name__", Value: "b"}}, Histograms: []prompb.Histogram{{Timestamp: 1}}},
		},
		Metadata: []prompb.MetricMetadata{{MetricFamilyName: "a"}},
	}
	b, err := proto.Marshal(v1)
	require.NoError(t, err)
	require.Equal(t, 3, countSamples(b, v1TimeSeries, v1SeriesSamples, v1SeriesHistograms))
	require.LessOrEqual(t, countSamples(b[:len(b)-3], v1TimeSeries, v1SeriesSamples, v1SeriesHistograms), 3, "a truncated body")

	v2 := &writev2.Request{
		Symbols: []string{"", "__name__", "a"},
		Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}, Histograms: []writev2.Histogram{{Timestamp: 2}, {Timestamp: 3}}},
			{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: 4}}, Exemplars: []writev2.Exemplar{{Value: 1}}},
		},
	}
	b, err = proto.Marshal(v2)
	require.NoError(t, err)
	require.Equal(t, 4, countSamples(b, v2TimeSeries, v2SeriesSamples, v2SeriesHistograms))
	require.Zero(t, countSamples([]byte{0xff, 0xff}, v1TimeSeries, v1SeriesSamples, v1SeriesHistograms))
}

// serve answers requests as the server does but for a refusal, which no
// store of these tests makes: the test fails.
func serve(t testing.TB, h *RemoteWriteHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.Serve(w, r); err != nil {
			// As the server answers it (pkg/server/errors.go, text dialect).
			// A refusal from below is not expected here.
			code := http.StatusInternalServerError
			var re *requestError
			if errors.As(err, &re) {
				code = re.HTTPStatus()
			} else {
				t.Errorf("refused: %v", err)
			}
			http.Error(w, err.Error(), code)
		}
	})
}
