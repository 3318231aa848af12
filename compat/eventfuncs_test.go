package compat

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	argoprom "github.com/argoproj/argo-rollouts/metricproviders/prometheus"
	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/golang/snappy"
	log "github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// TestArgoRolloutsEventWindowQuery runs an AnalysisTemplate-style metric
// through Argo Rollouts' own Prometheus provider against the levitated
// binary: the error ratio since the current canary step started, with
// increase_since and the window written by the events API. A healthy stage
// (1% errors before and after the step) is Successful; a broken one (50%
// errors since the step started, 1% before) is Failed, although its error
// ratio over the last 20 minutes as a whole would pass a 0.3 threshold.
func TestArgoRolloutsEventWindowQuery(t *testing.T) {
	u := start(t)
	now := time.Now().Truncate(15 * time.Second)
	stepStart := now.Add(-5 * time.Minute)

	// 20 minutes of RED counters, every 15 s, for two services.
	var body []byte
	for _, svc := range []string{"healthy", "broken"} {
		var errs, oks []byte
		var e, o float64
		for ts := now.Add(-20 * time.Minute); !ts.After(now.Add(-15 * time.Second)); ts = ts.Add(15 * time.Second) {
			if svc == "broken" && !ts.Before(stepStart) {
				e, o = e+50, o+50
			} else {
				e, o = e+1, o+99
			}
			errs = appendSample(errs, 2, e, ts.UnixMilli())
			oks = appendSample(oks, 2, o, ts.UnixMilli())
		}
		body = append(body, timeSeries(errs, "__name__", "http_requests_total", "code", "500", "service", svc)...)
		body = append(body, timeSeries(oks, "__name__", "http_requests_total", "code", "200", "service", svc)...)
	}
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	requireStatus(t, req, http.StatusNoContent)

	// The canary step of each service starts 5 minutes ago and is open.
	for _, svc := range []string{"healthy", "broken"} {
		req, err := http.NewRequest(http.MethodPost, u+"/api/v1/events", strings.NewReader(fmt.Sprintf(
			`{"name":"canary-step","state":"start","timestamp":%d,"attributes":{"service":%q,"weight":"20"}}`, stepStart.Unix(), svc)))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		requireStatus(t, req, http.StatusOK)
	}

	const query = `sum(increase_since(http_requests_total{service="%[1]s", code=~"5.."}[1h], change_event_active{event_name="canary-step", service="%[1]s"}))
  / sum(increase_since(http_requests_total{service="%[1]s"}[1h], change_event_active{event_name="canary-step", service="%[1]s"}))`
	for svc, phase := range map[string]argov1alpha1.AnalysisPhase{
		"healthy": argov1alpha1.AnalysisPhaseSuccessful,
		"broken":  argov1alpha1.AnalysisPhaseFailed,
	} {
		for _, q := range []string{
			fmt.Sprintf(query, svc),
			// The same through a MetricsQL WITH template.
			fmt.Sprintf(`WITH (step = change_event_active{event_name="canary-step", service="%[1]s"})
  sum(increase_since(http_requests_total{service="%[1]s", code=~"5.."}[1h], step)) / sum(increase_since(http_requests_total{service="%[1]s"}[1h], step))`, svc),
		} {
			metric := argov1alpha1.Metric{
				Name:             "error-ratio-since-step",
				SuccessCondition: "result[0] < 0.3",
				FailureCondition: "result[0] >= 0.3",
				Provider:         argov1alpha1.MetricProvider{Prometheus: &argov1alpha1.PrometheusMetric{Address: u, Query: q}},
			}
			promAPI, err := argoprom.NewPrometheusAPI(metric)
			require.NoError(t, err)
			provider, err := argoprom.NewPrometheusProvider(promAPI, *log.NewEntry(log.New()), metric)
			require.NoError(t, err)
			m := provider.Run(&argov1alpha1.AnalysisRun{}, metric)
			require.Equal(t, phase, m.Phase, "%s: %s %s", svc, m.Message, m.Value)
			want := 0.01
			if svc == "broken" {
				want = 0.5
			}
			got, err := strconv.ParseFloat(strings.Trim(m.Value, "[]"), 64)
			require.NoError(t, err, m.Value)
			require.InDelta(t, want, got, 1e-9, svc)
		}
	}
}

// timeSeries encodes one prometheus.TimeSeries (labels in the given order,
// which must be sorted) with the encoded samples, as a WriteRequest field.
func timeSeries(samples []byte, nv ...string) []byte {
	var s []byte
	for i := 0; i < len(nv); i += 2 {
		s = appendLabel(s, 1, nv[i], nv[i+1])
	}
	s = append(s, samples...)
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	return protowire.AppendBytes(req, s)
}

func requireStatus(t *testing.T, req *http.Request, code int) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, code, resp.StatusCode, string(b))
}
