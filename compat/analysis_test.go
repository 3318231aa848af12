package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	argokayenta "github.com/argoproj/argo-rollouts/metricproviders/kayenta"
	"github.com/argoproj/argo-rollouts/metricproviders/webmetric"
	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	flaggercontroller "github.com/fluxcd/flagger/pkg/controller"
	"github.com/golang/snappy"
	log "github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// writeRollout remote-writes 65 minutes up to now, at 10 s steps, of a
// checkout service's request counters (by code) and latency for each
// version: "stable" with 1 % errors, "healthy" the same, "worse" with 1.3
// times the errors, "bad" with 5 times.
func writeRollout(t *testing.T, u string, now time.Time) {
	t.Helper()
	var body []byte
	seed := int64(0)
	for _, v := range []struct {
		version string
		ratio   float64
	}{{"stable", 0.01}, {"healthy", 0.01}, {"worse", 0.013}, {"bad", 0.05}} {
		seed++
		r := rand.New(rand.NewSource(seed))
		series := func(name, code string) [][2]string {
			ls := [][2]string{{"__name__", name}}
			if code != "" {
				ls = append(ls, [2]string{"code", code})
			}
			return append(ls, [2]string{"job", "checkout"}, [2]string{"version", v.version})
		}
		var ok, bad, lat []byte
		var okN, badN float64
		for ts := now.Add(-65 * time.Minute); !ts.After(now); ts = ts.Add(10 * time.Second) {
			n := 500 + 25*r.NormFloat64()
			e := max(n*v.ratio*(1+0.2*r.NormFloat64()), 0)
			okN, badN = okN+n-e, badN+e
			ok = appendSample(ok, 2, okN, ts.UnixMilli())
			bad = appendSample(bad, 2, badN, ts.UnixMilli())
			lat = appendSample(lat, 2, 0.2+0.01*r.NormFloat64(), ts.UnixMilli())
		}
		body = appendTimeSeries(body, series("http_requests_total", "200"), ok)
		body = appendTimeSeries(body, series("http_requests_total", "500"), bad)
		body = appendTimeSeries(body, series("request_duration_seconds", ""), lat)
	}
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, string(b))
}

// appendTimeSeries appends one prometheus.TimeSeries (field 1 of a
// WriteRequest) with sorted labels and the encoded samples.
func appendTimeSeries(b []byte, labels [][2]string, samples []byte) []byte {
	var s []byte
	for _, l := range labels {
		s = appendLabel(s, 1, l[0], l[1])
	}
	s = append(s, samples...)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

func post(t *testing.T, u, body string) []byte {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return b
}

func get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return b
}

// kayentaCanaryConfig: the error ratio (critical beyond twice the
// baseline) and the latency, half the score each.
const kayentaCanaryConfig = `{
  "name": "checkout-canary", "applications": ["checkout"],
  "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
  "metrics": [
    {"name": "error-ratio", "scopeName": "default", "groups": ["errors"],
     "query": {"type": "prometheus", "serviceType": "prometheus",
               "customInlineTemplate": "PromQL:sum(rate(http_requests_total{job=\"checkout\",version=\"${scope}\",code=~\"5..\"}[1m])) / sum(rate(http_requests_total{job=\"checkout\",version=\"${scope}\"}[1m]))"},
     "analysisConfigurations": {"canary": {"direction": "increase", "critical": true, "effectSize": {"criticalIncrease": 2}}}},
    {"name": "latency", "scopeName": "default", "groups": ["latency"],
     "query": {"type": "prometheus", "serviceType": "prometheus", "metricName": "request_duration_seconds",
               "customInlineTemplate": "job=\"checkout\",version=\"${scope}\""},
     "analysisConfigurations": {"canary": {"direction": "increase"}}}
  ],
  "classifier": {"groupWeights": {"errors": 50, "latency": 50}}
}`

// TestArgoRolloutsKayenta drives Argo Rollouts' own Kayenta metric provider
// against levitated, as an AnalysisRun does: Run finds the config by name,
// starts the canary execution and returns Running; Resume polls
// /canary/{id} until it is complete and turns the score into a phase.
func TestArgoRolloutsKayenta(t *testing.T) {
	u := start(t)
	now := time.Now().Truncate(10 * time.Second)
	writeRollout(t, u, now)
	post(t, u+"/canaryConfig", kayentaCanaryConfig)

	provider := argokayenta.NewKayentaProvider(*log.NewEntry(log.New()), argokayenta.NewHttpClient())
	for _, tc := range []struct {
		canary string
		phase  argov1alpha1.AnalysisPhase
		score  string
	}{
		{"healthy", argov1alpha1.AnalysisPhaseSuccessful, "100"},
		{"worse", argov1alpha1.AnalysisPhaseInconclusive, "50"},
		{"bad", argov1alpha1.AnalysisPhaseFailed, "0"},
	} {
		t.Run(tc.canary, func(t *testing.T) {
			metric := argov1alpha1.Metric{
				Name:     "kayenta",
				Interval: "30m", // the scopes cover the last 30 minutes
				Provider: argov1alpha1.MetricProvider{Kayenta: &argov1alpha1.KayentaMetric{
					Address:                  u,
					Application:              "checkout",
					CanaryConfigName:         "checkout-canary",
					MetricsAccountName:       "levitated",
					ConfigurationAccountName: "levitated",
					StorageAccountName:       "levitated",
					Threshold:                argov1alpha1.KayentaThreshold{Pass: 95, Marginal: 50},
					Scopes: []argov1alpha1.KayentaScope{{
						Name:            "default",
						ControlScope:    argov1alpha1.ScopeDetail{Scope: "stable", Step: 10},
						ExperimentScope: argov1alpha1.ScopeDetail{Scope: tc.canary, Step: 10},
					}},
				}},
			}
			run := &argov1alpha1.AnalysisRun{Status: argov1alpha1.AnalysisRunStatus{StartedAt: &metav1.Time{Time: now.Add(-30 * time.Minute)}}}
			m := provider.Run(run, metric)
			require.Equal(t, argov1alpha1.AnalysisPhaseRunning, m.Phase, m.Message)
			require.Len(t, m.Metadata["canaryExecutionId"], 26)
			for i := 0; m.Phase == argov1alpha1.AnalysisPhaseRunning; i++ {
				require.Less(t, i, 3000, "the execution did not complete")
				time.Sleep(10 * time.Millisecond)
				m = provider.Resume(run, metric, m)
			}
			require.Equal(t, tc.phase, m.Phase, m.Message)
			require.Equal(t, tc.score, m.Value)
		})
	}
}

// nativeRequest is the body Argo Rollouts' Web provider (or a Flagger
// webhook) posts to /api/v1/analysis: the open canary-step window of
// checkout, the error ratio (critical beyond twice the baseline) and the
// latency, half the score each.
func nativeRequest(canary string) string {
	return fmt.Sprintf(`{
	  "baseline": "version=\"stable\"", "canary": %q,
	  "window": {"event": "canary-step", "match": ["service=\"checkout\""]},
	  "metrics": [
	    {"name": "error-ratio", "direction": "increase", "critical": true, "critical_increase": 2, "weight": 50,
	     "query": "sum(rate(http_requests_total{job=\"checkout\",code=~\"5..\"}[1m])) / sum(rate(http_requests_total{job=\"checkout\"}[1m]))"},
	    {"name": "latency", "direction": "increase", "weight": 50, "query": "avg(request_duration_seconds{job=\"checkout\"})"}
	  ],
	  "thresholds": {"pass": 95, "marginal": 50}
	}`, fmt.Sprintf("version=%q", canary))
}

// TestArgoRolloutsWeb drives Argo Rollouts' own Web metric provider against
// POST /api/v1/analysis with the jsonPath and conditions docs/analysis.md
// gives, for the verdict and for the score.
func TestArgoRolloutsWeb(t *testing.T) {
	u := start(t)
	now := time.Now().Truncate(10 * time.Second)
	writeRollout(t, u, now)
	// The rollout's current step, still open: analysed up to now.
	post(t, u+"/api/v1/events", fmt.Sprintf(`{"name":"canary-step","state":"start","timestamp":%d,"attributes":{"service":"checkout","weight":"20"}}`, now.Add(-30*time.Minute).Unix()))

	for _, tc := range []struct {
		canary string
		phase  argov1alpha1.AnalysisPhase
		score  string
	}{
		{"healthy", argov1alpha1.AnalysisPhaseSuccessful, "100"},
		{"worse", argov1alpha1.AnalysisPhaseInconclusive, "50"},
		{"bad", argov1alpha1.AnalysisPhaseFailed, "0"},
	} {
		t.Run(tc.canary, func(t *testing.T) {
			for _, check := range []struct {
				jsonPath, success, failure, value string
			}{
				{"{$.verdict}", `result == "Pass"`, `result == "Fail"`, `"` + map[string]string{"healthy": "Pass", "worse": "Marginal", "bad": "Fail"}[tc.canary] + `"`},
				{"{$.score}", "result >= 95", "result < 50", tc.score},
			} {
				metric := argov1alpha1.Metric{
					Name:             "canary-analysis",
					SuccessCondition: check.success,
					FailureCondition: check.failure,
					Provider: argov1alpha1.MetricProvider{Web: &argov1alpha1.WebMetric{
						Method:         argov1alpha1.WebMetricMethodPost,
						URL:            u + "/api/v1/analysis",
						JSONBody:       json.RawMessage(nativeRequest(tc.canary)),
						JSONPath:       check.jsonPath,
						TimeoutSeconds: 30,
					}},
				}
				client, err := webmetric.NewWebMetricHttpClient(metric)
				require.NoError(t, err)
				parser, err := webmetric.NewWebMetricJsonParser(metric)
				require.NoError(t, err)
				provider := webmetric.NewWebMetricProvider(*log.NewEntry(log.New()), client, parser)
				m := provider.Run(&argov1alpha1.AnalysisRun{}, metric)
				require.Equal(t, tc.phase, m.Phase, "%s: %s", check.jsonPath, m.Message)
				require.Equal(t, check.value, m.Value)
			}
		})
	}

	// A bad request is a measurement Error with the server's message.
	metric := argov1alpha1.Metric{
		Name: "broken", SuccessCondition: "result >= 95",
		Provider: argov1alpha1.MetricProvider{Web: &argov1alpha1.WebMetric{
			Method: argov1alpha1.WebMetricMethodPost, URL: u + "/api/v1/analysis", JSONPath: "{$.score}",
			JSONBody: json.RawMessage(`{"baseline":"version=\"stable\"","canary":"version=\"bad\"","lookback":"30m","metrics":[]}`),
		}},
	}
	client, err := webmetric.NewWebMetricHttpClient(metric)
	require.NoError(t, err)
	parser, err := webmetric.NewWebMetricJsonParser(metric)
	require.NoError(t, err)
	m := webmetric.NewWebMetricProvider(*log.NewEntry(log.New()), client, parser).Run(&argov1alpha1.AnalysisRun{}, metric)
	require.Equal(t, argov1alpha1.AnalysisPhaseError, m.Phase)
	require.Contains(t, m.Message, "received non 2xx response code: 400")
}

// TestFlaggerWebhook calls POST /api/v1/analysis:webhook with Flagger's own
// webhook client, as a "rollout" webhook of a Canary runs at every step:
// nil (the check passes) for a healthy canary, an error with the reason
// for a bad one.
func TestFlaggerWebhook(t *testing.T) {
	u := start(t)
	now := time.Now().Truncate(10 * time.Second)
	writeRollout(t, u, now)
	request := `{"baseline": "version=\"stable\"", "canary": "version=\"${name}\"", "lookback": "30m",
	  "metrics": [{"name": "error-ratio", "direction": "increase", "critical": true,
	    "query": "sum(rate(http_requests_total{job=\"checkout\",code=~\"5..\"}[1m])) / sum(rate(http_requests_total{job=\"checkout\"}[1m]))"}]}`
	hook := flaggerv1.CanaryWebhook{
		Name: "canary-analysis", Type: flaggerv1.RolloutHook, URL: u + "/api/v1/analysis:webhook", Timeout: "30s",
		Metadata: &map[string]string{"request": request},
	}
	canary := func(name string) flaggerv1.Canary {
		return flaggerv1.Canary{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}}
	}
	require.NoError(t, flaggercontroller.CallWebhook(canary("healthy"), flaggerv1.CanaryPhaseProgressing, hook))
	err := flaggercontroller.CallWebhook(canary("bad"), flaggerv1.CanaryPhaseProgressing, hook)
	require.ErrorContains(t, err, "canary analysis: Fail, score 0 (pass 95, marginal 75); Canary Failed: The metric error-ratio was classified as High (Critical); error-ratio: High.")
}
