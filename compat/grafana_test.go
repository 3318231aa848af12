package compat

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Grafana's Prometheus datasource (grafana/grafana pkg/promlib) sends its
// queries as form POSTs with Content-Type application/x-www-form-urlencoded
// (the default "httpMethod": "POST"), and the endpoints it knows to be
// GET-only (label values, metadata, status/*) as GETs. Times are Unix
// seconds formatted with strconv.FormatFloat(..., 'f', -1, 64).

func grafanaPOST(t *testing.T, u, path string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return send(t, req)
}

func grafanaGET(t *testing.T, u, path string, q url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u+path+"?"+q.Encode(), http.NoBody)
	require.NoError(t, err)
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func grafanaTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix())+float64(t.Nanosecond())/1e9, 'f', -1, 64)
}

func TestGrafanaDatasource(t *testing.T) {
	u, ts := startWithRollout(t)
	start, end := grafanaTime(ts.Add(-time.Minute)), grafanaTime(ts.Add(30*time.Second))

	// "Save & test": pkg/promlib/healthcheck.go runs the instant query 1+1
	// at time 4 (the end of its 1s..4s time range).
	code, body := grafanaPOST(t, u, "/api/v1/query", url.Values{"query": {"1+1"}, "time": {"4"}})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}`, body)

	// Heuristics: buildinfo without "features" makes Grafana treat the
	// datasource as Prometheus (not Mimir).
	code, body = grafanaGET(t, u, "/api/v1/status/buildinfo", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"version":"3.16.0"`)
	require.NotContains(t, body, `"features"`)

	// Query editor: label names, label values, series, metadata.
	code, body = grafanaPOST(t, u, "/api/v1/labels", url.Values{"start": {start}, "end": {end}})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"success","data":["__name__","code","job","version"]}`, body)
	code, body = grafanaGET(t, u, "/api/v1/label/code/values", url.Values{"start": {start}, "end": {end}})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"success","data":["200","500"]}`, body)
	code, body = grafanaPOST(t, u, "/api/v1/series", url.Values{"match[]": {`http_requests_total{code="500"}`}, "start": {start}, "end": {end}})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"success","data":[{"__name__":"http_requests_total","code":"500","job":"checkout","version":"canary"}]}`, body)
	code, body = grafanaGET(t, u, "/api/v1/metadata", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"success","data":{"http_requests_total":[{"type":"counter","help":"Requests.","unit":""}]}}`, body)

	// A panel: query_range with Grafana's step and timeout parameters.
	code, body = grafanaPOST(t, u, "/api/v1/query_range", url.Values{
		"query": {successRate}, "start": {grafanaTime(ts)}, "end": {grafanaTime(ts.Add(30 * time.Second))},
		"step": {"15"}, "timeout": {"30s"},
	})
	require.Equal(t, http.StatusOK, code)
	t0, t15, t30 := grafanaTime(ts), grafanaTime(ts.Add(15*time.Second)), grafanaTime(ts.Add(30*time.Second))
	require.JSONEq(t, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[`+
		t0+`,"0.99"],[`+t15+`,"0.99"],[`+t30+`,"0.99"]]}]}}`, body)

	// Exemplars beside the panel.
	code, body = grafanaPOST(t, u, "/api/v1/query_exemplars", url.Values{
		"query": {`http_requests_total{code="500"}`}, "start": {start}, "end": {end},
	})
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"success","data":[{"seriesLabels":{"__name__":"http_requests_total","code":"500","job":"checkout","version":"canary"},`+
		`"exemplars":[{"labels":{"trace_id":"t-500"},"value":"10","timestamp":`+t0+`}]}]}`, body)

	// A broken panel query comes back as Prometheus' bad_data error, which
	// Grafana shows as is.
	code, body = grafanaPOST(t, u, "/api/v1/query_range", url.Values{
		"query": {"sum(rate(x[5m])"}, "start": {t0}, "end": {t30}, "step": {"15"},
	})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `"errorType":"bad_data"`)
}
