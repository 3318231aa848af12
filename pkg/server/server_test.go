package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestWriteAndReadBack writes with remote write 1.0 and 2.0 over real HTTP
// and reads everything back through the Prometheus API with exact values.
func TestWriteAndReadBack(t *testing.T) {
	srv := servertest.Start(t)
	base := baseTime()
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }

	// Remote write 1.0: a counter with an exemplar and its metadata.
	r := writeV1(t, srv.URL, &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{{
			Labels: labelsV1("__name__", "http_requests_total", "code", "200", "job", "api"),
			Samples: []prompb.Sample{
				{Timestamp: ms(0), Value: 1},
				{Timestamp: ms(15 * time.Second), Value: 2.5},
				{Timestamp: ms(30 * time.Second), Value: 4},
			},
			Exemplars: []prompb.Exemplar{{
				Labels: labelsV1("trace_id", "abc123"), Value: 2.5, Timestamp: ms(15 * time.Second),
			}},
		}},
		Metadata: []prompb.MetricMetadata{{
			Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests served.",
		}},
	})
	require.Equal(t, http.StatusNoContent, r.code, r.body)

	// Remote write 2.0: a gauge with metadata and an exemplar.
	st := writev2.NewSymbolTable()
	r = writeV2(t, srv.URL, &writev2.Request{
		Timeseries: []writev2.TimeSeries{{
			LabelsRefs: st.SymbolizeLabels(labelsOf("__name__", "queue_depth", "job", "worker"), nil),
			Samples: []writev2.Sample{
				{Timestamp: ms(0), Value: 7},
				{Timestamp: ms(30 * time.Second), Value: 9},
			},
			Exemplars: []writev2.Exemplar{{
				LabelsRefs: st.SymbolizeLabels(labelsOf("trace_id", "def456"), nil), Value: 9, Timestamp: ms(30 * time.Second),
			}},
			Metadata: writev2.Metadata{
				Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("Items waiting."), UnitRef: st.Symbolize("items"),
			},
		}},
		Symbols: st.Symbols(),
	})
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.Equal(t, "2", r.header.Get("X-Prometheus-Remote-Write-Samples-Written"))
	require.Equal(t, "0", r.header.Get("X-Prometheus-Remote-Write-Histograms-Written"))
	require.Equal(t, "1", r.header.Get("X-Prometheus-Remote-Write-Exemplars-Written"))

	t0, t15, t30 := unixString(base), unixString(base.Add(15*time.Second)), unixString(base.Add(30*time.Second))

	// query, by GET and by form POST.
	want := `{"status":"success","data":{"resultType":"vector","result":[` +
		`{"metric":{"__name__":"http_requests_total","code":"200","job":"api"},"value":[` + t30 + `,"4"]}]}}`
	q := url.Values{"query": {"http_requests_total"}, "time": {t30}}
	require.JSONEq(t, want, get(t, srv.URL, "/api/v1/query", q).body)
	require.JSONEq(t, want, postForm(t, srv.URL, "/api/v1/query", q).body)

	// query_range.
	want = `{"status":"success","data":{"resultType":"matrix","result":[` +
		`{"metric":{"__name__":"queue_depth","job":"worker"},"values":[[` + t0 + `,"7"],[` + t15 + `,"7"],[` + t30 + `,"9"]]}]}}`
	q = url.Values{"query": {"queue_depth"}, "start": {t0}, "end": {t30}, "step": {"15"}}
	require.JSONEq(t, want, get(t, srv.URL, "/api/v1/query_range", q).body)
	require.JSONEq(t, want, postForm(t, srv.URL, "/api/v1/query_range", q).body)

	// A computed result.
	q = url.Values{"query": {"sum(http_requests_total) * 2"}, "time": {t30}}
	require.JSONEq(t, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[`+t30+`,"8"]}]}}`,
		get(t, srv.URL, "/api/v1/query", q).body)

	// series.
	r = get(t, srv.URL, "/api/v1/series", url.Values{"match[]": {`{job=~".+"}`}, "start": {t0}, "end": {t30}})
	require.JSONEq(t, `{"status":"success","data":[`+
		`{"__name__":"http_requests_total","code":"200","job":"api"},`+
		`{"__name__":"queue_depth","job":"worker"}]}`, r.body)

	// labels and label values.
	require.JSONEq(t, `{"status":"success","data":["__name__","code","job"]}`,
		get(t, srv.URL, "/api/v1/labels", nil).body)
	require.JSONEq(t, `{"status":"success","data":["http_requests_total","queue_depth"]}`,
		get(t, srv.URL, "/api/v1/label/__name__/values", nil).body)
	require.JSONEq(t, `{"status":"success","data":["api","worker"]}`,
		get(t, srv.URL, "/api/v1/label/job/values", nil).body)

	// metadata, from both protocol versions.
	require.JSONEq(t, `{"status":"success","data":{`+
		`"http_requests_total":[{"type":"counter","help":"Requests served.","unit":""}],`+
		`"queue_depth":[{"type":"gauge","help":"Items waiting.","unit":"items"}]}}`,
		get(t, srv.URL, "/api/v1/metadata", nil).body)
	require.JSONEq(t, `{"status":"success","data":{`+
		`"queue_depth":[{"type":"gauge","help":"Items waiting.","unit":"items"}]}}`,
		get(t, srv.URL, "/api/v1/metadata", url.Values{"metric": {"queue_depth"}}).body)

	// query_exemplars.
	r = get(t, srv.URL, "/api/v1/query_exemplars", url.Values{
		"query": {"http_requests_total or queue_depth"}, "start": {t0}, "end": {t30},
	})
	require.JSONEq(t, `{"status":"success","data":[`+
		`{"seriesLabels":{"__name__":"http_requests_total","code":"200","job":"api"},`+
		`"exemplars":[{"labels":{"trace_id":"abc123"},"value":"2.5","timestamp":`+t15+`}]},`+
		`{"seriesLabels":{"__name__":"queue_depth","job":"worker"},`+
		`"exemplars":[{"labels":{"trace_id":"def456"},"value":"9","timestamp":`+t30+`}]}]}`, r.body)

	// status/tsdb counts the two series.
	r = get(t, srv.URL, "/api/v1/status/tsdb", nil)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"numSeries":2`)
	require.Contains(t, r.body, `"seriesCountByMetricName":[{"name":"http_requests_total","value":1},{"name":"queue_depth","value":1}]`)

	// The flush endpoint keeps every value.
	r = postForm(t, srv.URL, "/api/v1/admin/flush", nil)
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.JSONEq(t, want0(t30), get(t, srv.URL, "/api/v1/query", url.Values{"query": {"http_requests_total"}, "time": {t30}}).body)
}

func want0(t30 string) string {
	return `{"status":"success","data":{"resultType":"vector","result":[` +
		`{"metric":{"__name__":"http_requests_total","code":"200","job":"api"},"value":[` + t30 + `,"4"]}]}}`
}

// TestPushAliasAndStatus checks /api/v1/push, health, readiness, the status
// endpoints and /metrics.
func TestPushAliasAndStatus(t *testing.T) {
	srv := servertest.Start(t, func(o *serverOptions) {
		o.Flags = map[string]string{"data-dir": o.DataDir}
		o.Version = "1.2.3"
	})
	base := baseTime()
	r := post(t, srv.URL+"/api/v1/push", contentTypeV1, encodeV1(t, &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{{
			Labels:  labelsV1("__name__", "pushed", "job", "mimirtool"),
			Samples: []prompb.Sample{{Timestamp: base.UnixMilli(), Value: 42}},
		}},
	}))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	require.JSONEq(t, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"pushed","job":"mimirtool"},"value":[`+
		unixString(base)+`,"42"]}]}}`, get(t, srv.URL, "/api/v1/query", url.Values{"query": {"pushed"}, "time": {unixString(base)}}).body)

	require.Equal(t, response{code: 200, body: "levitated is Healthy.\n"}, stripHeader(get(t, srv.URL, "/-/healthy", nil)))
	require.Equal(t, response{code: 200, body: "levitated is Ready.\n"}, stripHeader(get(t, srv.URL, "/-/ready", nil)))

	r = get(t, srv.URL, "/api/v1/status/buildinfo", nil)
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, r.body, `"version":"3.16.0","revision":"levitated-1.2.3","branch":"levitated"`)
	r = get(t, srv.URL, "/api/v1/status/flags", nil)
	require.Contains(t, r.body, `"data-dir":`)
	r = get(t, srv.URL, "/api/v1/status/runtimeinfo", nil)
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, r.body, `"storageRetention":"360h0m0s"`)

	// format_query and parse_query are Prometheus' own.
	r = get(t, srv.URL, "/api/v1/format_query", url.Values{"query": {"sum(rate(x[5m]))by(job)"}})
	require.JSONEq(t, `{"status":"success","data":"sum by (job) (rate(x[5m]))"}`, r.body)
	r = get(t, srv.URL, "/api/v1/parse_query", url.Values{"query": {"up"}})
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"type":"vectorSelector"`)

	// With nothing scraped, the scrape-state endpoints answer as an empty Prometheus.
	require.JSONEq(t, `{"status":"success","data":{"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{}}}`,
		get(t, srv.URL, "/api/v1/targets", nil).body)
	require.JSONEq(t, `{"status":"success","data":{"groups":[]}}`, get(t, srv.URL, "/api/v1/rules", nil).body)

	r = get(t, srv.URL, "/metrics", nil)
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, r.body, `levitated_http_requests_total{code="204",handler="/api/v1/push"} 1`)
	require.Contains(t, r.body, "prometheus_engine_queries ")
}

func stripHeader(r response) response { r.header = nil; return r }

// TestOTLP sends OTLP metrics as the OpenTelemetry collector does and reads
// them back with Prometheus' translation.
func TestOTLP(t *testing.T) {
	srv := servertest.Start(t)
	ts := baseTime()
	body := otlpGauge(t, "jobs.active", ts, 3)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/otlp/v1/metrics", body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	r := do(t, req)
	require.Equal(t, http.StatusOK, r.code, r.body)

	r = get(t, srv.URL, "/api/v1/query", url.Values{"query": {"jobs_active"}, "time": {unixString(ts)}})
	require.JSONEq(t, `{"status":"success","data":{"resultType":"vector","result":[`+
		`{"metric":{"__name__":"jobs_active","instance":"i-1","job":"checkout"},"value":[`+unixString(ts)+`,"3"]}]}}`, r.body)
}

// TestShutdownDrainsAndReopens writes, stops the server cleanly and starts
// a new one on the same directory: every acknowledged sample is there.
func TestShutdownDrainsAndReopens(t *testing.T) {
	dir := t.TempDir()
	base := baseTime()
	for round := range 2 {
		func() {
			srv := startOnDir(t, dir)
			defer srv.stop()
			r := writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
				Labels:  labelsV1("__name__", "rounds", "job", "test"),
				Samples: []prompb.Sample{{Timestamp: base.Add(time.Duration(round) * time.Second).UnixMilli(), Value: float64(round)}},
			}}})
			require.Equal(t, http.StatusNoContent, r.code, r.body)
			r = get(t, srv.URL, "/api/v1/query", url.Values{
				"query": {"count_over_time(rounds[1m])"}, "time": {unixString(base.Add(2 * time.Second))},
			})
			require.Contains(t, r.body, fmt.Sprintf(`,"%d"]`, round+1), r.body)
		}()
	}
}
