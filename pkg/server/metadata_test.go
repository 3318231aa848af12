package server_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestRemoteWriteV2MetadataAsPrometheusSendsIt writes what Prometheus 3.16
// sends with remote write 2.0 and --enable-feature=metadata-wal-records:
// every series carries its family's type, help and unit, and nothing names
// the family, so the series of a classic histogram or a summary carry their
// suffixes (_bucket, _sum, _count). /api/v1/metadata must answer by family,
// as the scraping Prometheus' own /api/v1/metadata does for the same
// target. compat/prometheus_test.go runs the real binary against the same
// path.
func TestRemoteWriteV2MetadataAsPrometheusSendsIt(t *testing.T) {
	srv := servertest.Start(t)
	base := baseTime()

	st := writev2.NewSymbolTable()
	meta := func(typ writev2.Metadata_MetricType, help, unit string) writev2.Metadata {
		return writev2.Metadata{Type: typ, HelpRef: st.Symbolize(help), UnitRef: st.Symbolize(unit)}
	}
	counter := meta(writev2.Metadata_METRIC_TYPE_COUNTER, "Requests served.", "")
	gauge := meta(writev2.Metadata_METRIC_TYPE_GAUGE, "Items waiting.", "")
	hist := meta(writev2.Metadata_METRIC_TYPE_HISTOGRAM, "Request latency.", "seconds")
	summary := meta(writev2.Metadata_METRIC_TYPE_SUMMARY, "GC pauses.", "seconds")
	native := meta(writev2.Metadata_METRIC_TYPE_HISTOGRAM, "RPC latency.", "seconds")
	// Two scrapes, each sent in its own request, as Prometheus sends them.
	for i := range 2 {
		ts := base.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
		float := func(m writev2.Metadata, v float64, nv ...string) writev2.TimeSeries {
			return writev2.TimeSeries{
				LabelsRefs: st.SymbolizeLabels(labelsOf(append(nv, "job", "api")...), nil),
				Samples:    []writev2.Sample{{Value: v, Timestamp: ts}},
				Metadata:   m,
			}
		}
		series := []writev2.TimeSeries{
			float(counter, 10, "__name__", "http_requests_total", "code", "200"),
			float(gauge, 3, "__name__", "queue_depth"),
			float(hist, 1, "__name__", "http_request_duration_seconds_bucket", "le", "0.1"),
			float(hist, 2, "__name__", "http_request_duration_seconds_bucket", "le", "+Inf"),
			float(hist, 0.3, "__name__", "http_request_duration_seconds_sum"),
			float(hist, 2, "__name__", "http_request_duration_seconds_count"),
			float(summary, 0.001, "__name__", "go_gc_duration_seconds", "quantile", "0.5"),
			float(summary, 0.01, "__name__", "go_gc_duration_seconds_sum"),
			float(summary, 7, "__name__", "go_gc_duration_seconds_count"),
			{
				LabelsRefs: st.SymbolizeLabels(labelsOf("__name__", "rpc_duration_seconds", "job", "api"), nil),
				Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, ts, tsdbutil.GenerateTestHistogram(int64(i)))},
				Metadata:   native,
			},
		}
		r := writeV2(t, srv.URL, &writev2.Request{Timeseries: series, Symbols: st.Symbols()})
		require.Equal(t, http.StatusNoContent, r.code, r.body)
	}

	all := `{"status":"success","data":{` +
		`"go_gc_duration_seconds":[{"type":"summary","help":"GC pauses.","unit":"seconds"}],` +
		`"http_request_duration_seconds":[{"type":"histogram","help":"Request latency.","unit":"seconds"}],` +
		`"http_requests_total":[{"type":"counter","help":"Requests served.","unit":""}],` +
		`"queue_depth":[{"type":"gauge","help":"Items waiting.","unit":""}],` +
		`"rpc_duration_seconds":[{"type":"histogram","help":"RPC latency.","unit":"seconds"}]}}`
	require.JSONEq(t, all, get(t, srv.URL, "/api/v1/metadata", nil).body)
	require.JSONEq(t, `{"status":"success","data":{`+
		`"http_request_duration_seconds":[{"type":"histogram","help":"Request latency.","unit":"seconds"}]}}`,
		get(t, srv.URL, "/api/v1/metadata", url.Values{"metric": {"http_request_duration_seconds"}}).body)
	// Prometheus looks a family up by its name only: a series name of the
	// family is not a family.
	require.JSONEq(t, `{"status":"success","data":{}}`,
		get(t, srv.URL, "/api/v1/metadata", url.Values{"metric": {"http_request_duration_seconds_bucket"}}).body)

	// Remote write 1.0 with metadata_config: Prometheus sends the families
	// of its scrape cache, by name, in requests of their own. A changed help
	// text is one more entry of the family.
	r := writeV1(t, srv.URL, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "http_request_duration_seconds", Help: "Request latency.", Unit: "seconds"},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "queue_depth", Help: "Items waiting in the queue."},
	}})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.JSONEq(t, `{"status":"success","data":{`+
		`"queue_depth":[{"type":"gauge","help":"Items waiting.","unit":""},{"type":"gauge","help":"Items waiting in the queue.","unit":""}]}}`,
		get(t, srv.URL, "/api/v1/metadata", url.Values{"metric": {"queue_depth"}}).body)
	require.JSONEq(t, `{"status":"success","data":{`+
		`"queue_depth":[{"type":"gauge","help":"Items waiting.","unit":""}]}}`,
		get(t, srv.URL, "/api/v1/metadata", url.Values{"metric": {"queue_depth"}, "limit_per_metric": {"1"}}).body)
	require.JSONEq(t, `{"status":"success","data":{`+
		`"go_gc_duration_seconds":[{"type":"summary","help":"GC pauses.","unit":"seconds"}],`+
		`"http_request_duration_seconds":[{"type":"histogram","help":"Request latency.","unit":"seconds"}]}}`,
		get(t, srv.URL, "/api/v1/metadata", url.Values{"limit": {"2"}}).body)
}

// TestRemoteWriteV2ExemplarOnlySeries sends exemplars as Prometheus 3.16's
// remote write 2.0 sender does: each in a series of its own without
// samples, in the request of the samples or a later one. The 2.0 spec
// allows it; Prometheus' receiver answers 400 and stores none. levitated
// stores each exemplar whose series exists and counts it in the
// Exemplars-Written header; those of an unknown series are dropped.
func TestRemoteWriteV2ExemplarOnlySeries(t *testing.T) {
	srv := servertest.Start(t)
	base := baseTime()
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	st := writev2.NewSymbolTable()
	counter := writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Requests served.")}
	series := func(name string) []uint32 {
		return st.SymbolizeLabels(labelsOf("__name__", name, "job", "api"), nil)
	}
	exemplarOnly := func(name, trace string, v float64, ts int64) writev2.TimeSeries {
		return writev2.TimeSeries{
			LabelsRefs: series(name),
			Exemplars:  []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labelsOf("trace_id", trace), nil), Value: v, Timestamp: ts}},
			Metadata:   counter,
		}
	}
	// The samples of a and b, then the exemplar of a in the same request.
	r := writeV2(t, srv.URL, &writev2.Request{Timeseries: []writev2.TimeSeries{
		{LabelsRefs: series("a_total"), Samples: []writev2.Sample{{Value: 1, Timestamp: ms(0)}}, Metadata: counter},
		{LabelsRefs: series("b_total"), Samples: []writev2.Sample{{Value: 5, Timestamp: ms(0)}}, Metadata: counter},
		exemplarOnly("a_total", "aaa", 1, ms(0)),
	}, Symbols: st.Symbols()})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.Equal(t, "2", r.header.Get("X-Prometheus-Remote-Write-Samples-Written"))
	require.Equal(t, "1", r.header.Get("X-Prometheus-Remote-Write-Exemplars-Written"))
	// Exemplars alone, of a series stored before and of one never seen.
	r = writeV2(t, srv.URL, &writev2.Request{Timeseries: []writev2.TimeSeries{
		exemplarOnly("b_total", "bbb", 5, ms(0)),
		exemplarOnly("never_total", "ccc", 1, ms(0)),
	}, Symbols: st.Symbols()})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.Equal(t, "0", r.header.Get("X-Prometheus-Remote-Write-Samples-Written"))
	require.Equal(t, "1", r.header.Get("X-Prometheus-Remote-Write-Exemplars-Written"))

	t0 := unixString(base)
	r = get(t, srv.URL, "/api/v1/query_exemplars", url.Values{"query": {`{job="api"}`}, "start": {t0}, "end": {t0}})
	require.JSONEq(t, `{"status":"success","data":[`+
		`{"seriesLabels":{"__name__":"a_total","job":"api"},"exemplars":[{"labels":{"trace_id":"aaa"},"value":"1","timestamp":`+t0+`}]},`+
		`{"seriesLabels":{"__name__":"b_total","job":"api"},"exemplars":[{"labels":{"trace_id":"bbb"},"value":"5","timestamp":`+t0+`}]}]}`, r.body)
	// The unknown series was not created by its exemplar.
	require.JSONEq(t, `{"status":"success","data":["a_total","b_total"]}`, get(t, srv.URL, "/api/v1/label/__name__/values", nil).body)
}

// TestRemoteWriteV1ExemplarOnlySeries: Prometheus' 1.0 sender also sends
// exemplars in series of their own. After a restart the handler has not
// seen the series in this process, and its exemplars must still be stored
// (Prometheus' receiver looks the series up by its labels).
func TestRemoteWriteV1ExemplarOnlySeries(t *testing.T) {
	dir := t.TempDir()
	base := baseTime()
	t0 := unixString(base)
	srv := startOnDir(t, dir)
	r := writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  labelsV1("__name__", "a_total", "job", "api"),
		Samples: []prompb.Sample{{Timestamp: base.UnixMilli(), Value: 1}},
	}}})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	srv.stop()

	srv = startOnDir(t, dir)
	defer srv.stop()
	r = writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:    labelsV1("__name__", "a_total", "job", "api"),
		Exemplars: []prompb.Exemplar{{Labels: labelsV1("trace_id", "aaa"), Value: 1, Timestamp: base.UnixMilli()}},
	}, {
		Labels:    labelsV1("__name__", "never_total", "job", "api"),
		Exemplars: []prompb.Exemplar{{Labels: labelsV1("trace_id", "ccc"), Value: 1, Timestamp: base.UnixMilli()}},
	}}})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	r = get(t, srv.URL, "/api/v1/query_exemplars", url.Values{"query": {`{job="api"}`}, "start": {t0}, "end": {t0}})
	require.JSONEq(t, `{"status":"success","data":[`+
		`{"seriesLabels":{"__name__":"a_total","job":"api"},"exemplars":[{"labels":{"trace_id":"aaa"},"value":"1","timestamp":`+t0+`}]}]}`, r.body)
	require.JSONEq(t, `{"status":"success","data":["a_total"]}`, get(t, srv.URL, "/api/v1/label/__name__/values", nil).body)
}
