package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	argokayenta "github.com/argoproj/argo-rollouts/metricproviders/kayenta"
	argoprom "github.com/argoproj/argo-rollouts/metricproviders/prometheus"
	"github.com/argoproj/argo-rollouts/metricproviders/webmetric"
	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	flaggercontroller "github.com/fluxcd/flagger/pkg/controller"
	flagger "github.com/fluxcd/flagger/pkg/metrics/providers"
	"github.com/golang/snappy"
	log "github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The deploy examples, run as they are (strictly parsed, arguments and
// addresses substituted) against the binary, on data labelled as
// Kubernetes service discovery labels a rollout's pods.

const (
	stableHash = "6d8b7c9f4b"
	canaryHash = "7f5c4d8b9c"
)

// writeKubernetesRollout remote-writes 65 minutes up to now of a checkout
// Deployment's request counters and latency buckets, for the stable pods
// (Argo's stable ReplicaSet, Flagger's primary) and the canary pods, with
// canaryErrors times the stable pods' 0.5 % of 5xx.
func writeKubernetesRollout(t *testing.T, u string, now time.Time, canaryErrors float64) {
	t.Helper()
	var body []byte
	for i, side := range []struct {
		hash, pod string
		ratio     float64
	}{{stableHash, "checkout-primary-" + stableHash + "-x2k9p", 0.005}, {canaryHash, "checkout-" + canaryHash + "-q7w4z", 0.005 * canaryErrors}} {
		r := rand.New(rand.NewSource(int64(i + 11)))
		ls := func(name string, kv ...string) [][2]string {
			out := [][2]string{{"__name__", name}, {"app", "checkout"}}
			for j := 0; j < len(kv); j += 2 {
				out = append(out, [2]string{kv[j], kv[j+1]})
			}
			return append(out, [2]string{"namespace", "shop"}, [2]string{"pod", side.pod},
				[2]string{"rollouts_pod_template_hash", side.hash}, [2]string{"service", "checkout"})
		}
		les := []string{"0.1", "0.25", "0.5", "1", "+Inf"}
		var ok, bad []byte
		buckets := make([][]byte, len(les))
		var okN, badN float64
		counts := make([]float64, len(les))
		for ts := now.Add(-65 * time.Minute); !ts.After(now); ts = ts.Add(10 * time.Second) {
			n := 500 + 25*r.NormFloat64()
			e := max(n*side.ratio*(1+0.2*r.NormFloat64()), 0)
			okN, badN = okN+n-e, badN+e
			ok = appendSample(ok, 2, okN, ts.UnixMilli())
			bad = appendSample(bad, 2, badN, ts.UnixMilli())
			for j, share := range []float64{0.5, 0.8, 0.95, 0.99, 1} {
				counts[j] += n * share * (1 + 0.01*r.NormFloat64())
				buckets[j] = appendSample(buckets[j], 2, counts[j], ts.UnixMilli())
			}
		}
		body = appendTimeSeries(body, ls("http_request_duration_seconds_bucket", "le", "0.1"), buckets[0])
		for j := 1; j < len(les); j++ {
			body = appendTimeSeries(body, ls("http_request_duration_seconds_bucket", "le", les[j]), buckets[j])
		}
		body = appendTimeSeries(body, ls("http_requests_total", "code", "200"), ok)
		body = appendTimeSeries(body, ls("http_requests_total", "code", "500"), bad)
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

// example reads a deploy example, with the in-cluster address replaced by
// u and the AnalysisTemplate arguments by args, and splits its documents.
func example(t *testing.T, path, u string, args map[string]string) [][]byte {
	t.Helper()
	b, err := os.ReadFile("../deploy/" + path)
	require.NoError(t, err)
	s := strings.ReplaceAll(string(b), "http://levitated.monitoring.svc:9090", u)
	for k, v := range args {
		s = strings.ReplaceAll(s, "{{args."+k+"}}", v)
	}
	var docs [][]byte
	for _, d := range strings.Split(s, "\n---\n") {
		docs = append(docs, []byte(d))
	}
	return docs
}

func analysisTemplate(t *testing.T, doc []byte) argov1alpha1.AnalysisTemplate {
	t.Helper()
	var tpl argov1alpha1.AnalysisTemplate
	require.NoError(t, yaml.UnmarshalStrict(doc, &tpl))
	require.Equal(t, "AnalysisTemplate", tpl.Kind)
	return tpl
}

func TestDeployExamplesArgoRollouts(t *testing.T) {
	for _, tc := range []struct {
		canaryErrors float64
		phase        argov1alpha1.AnalysisPhase
	}{{1, argov1alpha1.AnalysisPhaseSuccessful}, {5, argov1alpha1.AnalysisPhaseFailed}} {
		t.Run(fmt.Sprintf("errors=%vx", tc.canaryErrors), func(t *testing.T) {
			u := start(t)
			now := time.Now().Truncate(10 * time.Second)
			writeKubernetesRollout(t, u, now, tc.canaryErrors)
			post(t, u+"/api/v1/events", fmt.Sprintf(`{"name":"canary-step","state":"start","timestamp":%d,"attributes":{"service":"checkout","app":"checkout"}}`,
				now.Add(-20*time.Minute).Unix()))
			args := map[string]string{"service": "checkout", "stable-hash": stableHash, "canary-hash": canaryHash}

			// analysis-kayenta.yaml: store the ConfigMap's config, run the template's metric.
			docs := example(t, "argo-rollouts/analysis-kayenta.yaml", u, args)
			var cm corev1.ConfigMap
			require.NoError(t, yaml.UnmarshalStrict(docs[1], &cm))
			post(t, u+"/canaryConfig", cm.Data["checkout-canary.json"])
			metric := analysisTemplate(t, docs[0]).Spec.Metrics[0]
			run := &argov1alpha1.AnalysisRun{Status: argov1alpha1.AnalysisRunStatus{StartedAt: &metav1.Time{Time: now.Add(-5 * time.Minute)}}}
			kp := argokayenta.NewKayentaProvider(*log.NewEntry(log.New()), argokayenta.NewHttpClient())
			m := kp.Run(run, metric)
			for i := 0; m.Phase == argov1alpha1.AnalysisPhaseRunning; i++ {
				require.Less(t, i, 3000)
				time.Sleep(10 * time.Millisecond)
				m = kp.Resume(run, metric, m)
			}
			require.Equal(t, tc.phase, m.Phase, "kayenta: %s %s", m.Message, m.Value)

			// analysis-web.yaml.
			metric = analysisTemplate(t, example(t, "argo-rollouts/analysis-web.yaml", u, args)[0]).Spec.Metrics[0]
			client, err := webmetric.NewWebMetricHttpClient(metric)
			require.NoError(t, err)
			parser, err := webmetric.NewWebMetricJsonParser(metric)
			require.NoError(t, err)
			m = webmetric.NewWebMetricProvider(*log.NewEntry(log.New()), client, parser).Run(&argov1alpha1.AnalysisRun{}, metric)
			require.Equal(t, tc.phase, m.Phase, "web: %s %s", m.Message, m.Value)

			// analysis-prometheus.yaml.
			metric = analysisTemplate(t, example(t, "argo-rollouts/analysis-prometheus.yaml", u, args)[0]).Spec.Metrics[0]
			api, err := argoprom.NewPrometheusAPI(metric)
			require.NoError(t, err)
			pp, err := argoprom.NewPrometheusProvider(api, *log.NewEntry(log.New()), metric)
			require.NoError(t, err)
			m = pp.Run(&argov1alpha1.AnalysisRun{}, metric)
			require.Equal(t, tc.phase, m.Phase, "prometheus: %s %s", m.Message, m.Value)
		})
	}
}

// TestDeployExampleFlagger runs deploy/flagger's MetricTemplate through
// Flagger's own Prometheus provider and the Canary's rollout webhook through
// Flagger's own webhook call, on a healthy canary and on one with five
// times the primary's errors: the template measures the canary's pods only
// (not diluted by the primary's) and passes (≤ max 1 %) the healthy one,
// and the judge passes the healthy one and fails the other.
func TestDeployExampleFlagger(t *testing.T) {
	for _, tc := range []struct {
		canaryErrors float64
		percent      float64 // the canary's error percentage since the step
		pass         bool
	}{{1, 0.5, true}, {5, 2.5, false}} {
		t.Run(fmt.Sprintf("errors=%vx", tc.canaryErrors), func(t *testing.T) {
			u := start(t)
			now := time.Now().Truncate(10 * time.Second)
			writeKubernetesRollout(t, u, now, tc.canaryErrors)
			post(t, u+"/api/v1/events", fmt.Sprintf(`{"name":"canary-step","state":"start","timestamp":%d,"attributes":{"service":"checkout"}}`,
				now.Add(-20*time.Minute).Unix()))
			docs := example(t, "flagger/metric-template-analysis.yaml", u, nil)

			var mt flaggerv1.MetricTemplate
			require.NoError(t, yaml.UnmarshalStrict(docs[0], &mt))
			provider, err := flagger.NewPrometheusProvider(mt.Spec.Provider, nil)
			require.NoError(t, err)
			query := strings.NewReplacer("{{ namespace }}", "shop", "{{ target }}", "checkout").Replace(mt.Spec.Query)
			v, err := provider.RunQuery(query)
			require.NoError(t, err)
			require.InDelta(t, tc.percent, v, 0.3, "the canary pods' error percentage since the step")

			var canary flaggerv1.Canary
			require.NoError(t, yaml.UnmarshalStrict(docs[1], &canary))
			metric := canary.Spec.Analysis.Metrics[0]
			require.Equal(t, "error-ratio-since-step", metric.TemplateRef.Name)
			require.Equal(t, tc.pass, v <= *metric.ThresholdRange.Max, "Flagger's threshold check: %v against max %v", v, *metric.ThresholdRange.Max)
			hook := canary.Spec.Analysis.Webhooks[0]
			err = flaggercontroller.CallWebhook(canary, flaggerv1.CanaryPhaseProgressing, hook)
			if tc.pass {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "canary analysis: Fail, score 0")
			require.ErrorContains(t, err, "error-ratio: High.")
		})
	}
}

// writeStep remote-writes 30 minutes up to now, at 10 s steps, of a
// service's http_requests_total by code: 100 requests per second, 1 % of
// them 5xx until from, then errRatio.
func writeStep(t *testing.T, u, service string, now, from time.Time, errRatio float64) {
	t.Helper()
	r := rand.New(rand.NewSource(5))
	var ok, bad []byte
	var okN, badN float64
	for ts := now.Add(-30 * time.Minute); !ts.After(now); ts = ts.Add(10 * time.Second) {
		ratio := 0.01
		if !ts.Before(from) {
			ratio = errRatio
		}
		n := 1000 + 30*r.NormFloat64()
		e := max(n*ratio*(1+0.05*r.NormFloat64()), 0)
		okN, badN = okN+n-e, badN+e
		ok = appendSample(ok, 2, okN, ts.UnixMilli())
		bad = appendSample(bad, 2, badN, ts.UnixMilli())
	}
	ls := func(code string) [][2]string {
		return [][2]string{{"__name__", "http_requests_total"}, {"code", code}, {"service", service}}
	}
	body := appendTimeSeries(appendTimeSeries(nil, ls("200"), ok), ls("500"), bad)
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

// TestArgoRolloutsGate runs deploy/argo-rollouts/analysis-gate.yaml
// through Argo Rollouts' own Web provider against POST
// /api/v1/gates:evaluate, with no query written anywhere: the canary step
// of a service whose errors stay at 1 % is Successful, the one where they
// rise tenfold is Failed (open, judged over the time since it started;
// then closed, judged and recorded; then answered from the record), and a
// step without traffic is Inconclusive. The simplest form docs/impact.md
// gives ({$.allowed}, result == true, result == false) passes and fails
// the same steps.
func TestArgoRolloutsGate(t *testing.T) {
	u := start(t)
	now := time.Now().Truncate(10 * time.Second)
	from := now.Add(-5 * time.Minute)
	step := func(service, state string) {
		post(t, u+"/api/v1/events", fmt.Sprintf(`{"name":"canary-step","state":%q,"timestamp":%d,"attributes":{"service":%q,"weight":"20"}}`,
			state, map[string]time.Time{"start": from, "stop": now}[state].Unix(), service))
	}
	writeStep(t, u, "cart", now, from, 0.01)
	writeStep(t, u, "checkout", now, from, 0.10)
	for _, svc := range []string{"cart", "checkout", "idle"} {
		step(svc, "start")
	}

	run := func(metric argov1alpha1.Metric) *argov1alpha1.Measurement {
		t.Helper()
		client, err := webmetric.NewWebMetricHttpClient(metric)
		require.NoError(t, err)
		parser, err := webmetric.NewWebMetricJsonParser(metric)
		require.NoError(t, err)
		m := webmetric.NewWebMetricProvider(*log.NewEntry(log.New()), client, parser).Run(&argov1alpha1.AnalysisRun{}, metric)
		return &m
	}
	template := func(service string) argov1alpha1.Metric {
		args := map[string]string{"service": service, "levitated-token": "unused"}
		return analysisTemplate(t, example(t, "argo-rollouts/analysis-gate.yaml", u, args)[0]).Spec.Metrics[0]
	}
	simple := func(service string) argov1alpha1.Metric {
		m := template(service)
		m.Provider.Web.JSONPath = "{$.allowed}"
		m.SuccessCondition, m.FailureCondition = "result == true", "result == false"
		return m
	}
	verdict := func(m *argov1alpha1.Measurement) string {
		var v struct {
			Verdict string `json:"verdict"`
			Source  string `json:"source"`
		}
		require.NoError(t, json.Unmarshal([]byte(m.Value), &v), m.Value)
		return v.Verdict + " (" + v.Source + ")"
	}

	m := run(template("cart"))
	require.Equal(t, argov1alpha1.AnalysisPhaseSuccessful, m.Phase, "%s %s", m.Message, m.Value)
	require.Equal(t, "pass (judged)", verdict(m))
	m = run(template("checkout"))
	require.Equal(t, argov1alpha1.AnalysisPhaseFailed, m.Phase, "%s %s", m.Message, m.Value)
	require.Equal(t, "fail (judged)", verdict(m))
	require.Contains(t, m.Value, "error-ratio High")
	m = run(template("idle"))
	require.Equal(t, argov1alpha1.AnalysisPhaseInconclusive, m.Phase, "%s %s", m.Message, m.Value)
	require.Equal(t, "inconclusive (judged)", verdict(m))

	m = run(simple("cart"))
	require.Equal(t, argov1alpha1.AnalysisPhaseSuccessful, m.Phase, "%s %s", m.Message, m.Value)
	require.Equal(t, "true", m.Value)
	m = run(simple("checkout"))
	require.Equal(t, argov1alpha1.AnalysisPhaseFailed, m.Phase, "%s %s", m.Message, m.Value)
	require.Equal(t, "false", m.Value)

	// The step ends: the gate judges the closed change and records the
	// judgement, then answers from the record.
	step("checkout", "stop")
	m = run(template("checkout"))
	require.Equal(t, argov1alpha1.AnalysisPhaseFailed, m.Phase, "%s %s", m.Message, m.Value)
	require.Equal(t, "fail (judged)", verdict(m))
	m = run(template("checkout"))
	require.Equal(t, argov1alpha1.AnalysisPhaseFailed, m.Phase, "%s %s", m.Message, m.Value)
	require.Equal(t, "fail (recorded)", verdict(m))
}
