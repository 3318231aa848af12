package compat

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	argokayenta "github.com/argoproj/argo-rollouts/metricproviders/kayenta"
	argoprom "github.com/argoproj/argo-rollouts/metricproviders/prometheus"
	"github.com/argoproj/argo-rollouts/metricproviders/webmetric"
	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	templateutil "github.com/argoproj/argo-rollouts/utils/template"
	timeutil "github.com/argoproj/argo-rollouts/utils/time"
	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	flagger "github.com/fluxcd/flagger/pkg/metrics/providers"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	log "github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The demo's pod-template hashes (pkg/demo/traffic.go).
const (
	demoStableHash = "6d8b7c9f4b"
	demoCanaryHash = "7f5c4d8b9c"
)

var pausedRE = regexp.MustCompile(`^paused run=(\S+) weight=(\d+) verdict=(\S+) start=(\S+) end=(\S+) url=(\S+): `)

// demoStage is a stage at which `levitated demo --pause` stopped, as its
// paused line says.
type demoStage struct {
	run, verdict, url string
	weight            int
	start, end        time.Time
}

func (s demoStage) key() string { return fmt.Sprintf("%s/%d", s.run, s.weight) }

// playDemo runs `levitated demo --pause` (the real binary) with args and
// calls each at every pause, levitated still serving, going on (Enter)
// once it returns. It returns the demo's output after it exited 0.
func playDemo(t *testing.T, args []string, each func(demoStage)) string {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"demo", "--pause"}, args...)...)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		m := pausedRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := demoStage{run: m[1], verdict: m[3], url: m[6]}
		s.weight, err = strconv.Atoi(m[2])
		require.NoError(t, err)
		s.start, err = time.Parse(time.RFC3339, m[4])
		require.NoError(t, err)
		s.end, err = time.Parse(time.RFC3339, m[5])
		require.NoError(t, err)
		each(s)
		_, err = io.WriteString(stdin, "\n")
		require.NoError(t, err)
	}
	require.NoError(t, sc.Err())
	require.NoError(t, cmd.Wait(), out.String())
	return out.String()
}

// demoPhases are the phases the templates must give the demo's stages: the
// healthy canary passes every stage, the one that regresses at 40 % passes
// 20 % and fails 40 %, where the demo rolls it back.
var demoPhases = map[string]argov1alpha1.AnalysisPhase{
	"healthy/20": argov1alpha1.AnalysisPhaseSuccessful, "healthy/40": argov1alpha1.AnalysisPhaseSuccessful,
	"healthy/60": argov1alpha1.AnalysisPhaseSuccessful, "healthy/80": argov1alpha1.AnalysisPhaseSuccessful,
	"regression/20": argov1alpha1.AnalysisPhaseSuccessful, "regression/40": argov1alpha1.AnalysisPhaseFailed,
}

// demoVerdict is the demo's own verdict for a phase.
var demoVerdict = map[argov1alpha1.AnalysisPhase]string{argov1alpha1.AnalysisPhaseSuccessful: "Pass", argov1alpha1.AnalysisPhaseFailed: "Fail"}

// checkDemoOutcomes checks that every stage was judged and both outcomes
// reached.
func checkDemoOutcomes(t *testing.T, seen map[string]bool, out string) {
	t.Helper()
	require.Len(t, seen, len(demoPhases), "stages judged: %v\n%s", seen, out)
	require.Contains(t, out, "-> PROMOTED")
	require.Contains(t, out, "-> ROLLED BACK")
}

// queryAt is a Prometheus API client whose instant queries are evaluated
// at a given time: Argo Rollouts' Prometheus provider asks at time.Now(),
// and the AnalysisRun of a stage runs at the stage's end, which the demo
// plays in simulated time.
type queryAt struct {
	promv1.API
	at time.Time
}

func (q queryAt) Query(ctx context.Context, query string, _ time.Time, opts ...promv1.Option) (model.Value, promv1.Warnings, error) {
	return q.API.Query(ctx, query, q.at, opts...)
}

// runArgoTemplates runs the Argo Rollouts AnalysisTemplates of
// deploy/argo-rollouts against levitated at u, through Argo Rollouts' own
// providers, as the AnalysisRun at the end of the demo's stage s would:
// the stage gate and analysis-prometheus.yaml (Prometheus provider, at the
// stage's end), the stage judge (Web provider, over the latest canary-step
// window: the stage's) and analysis-kayenta.yaml (Kayenta provider, its
// 5-minute interval ending at the stage's end; its canary config stored
// once per server in configStored). Each must give phase.
func runArgoTemplates(t *testing.T, u string, s demoStage, phase argov1alpha1.AnalysisPhase, configStored map[string]bool) {
	t.Helper()
	// levitated listens on loopback without tokens: any token is accepted.
	args := map[string]string{"service": "checkout", "stable-hash": demoStableHash, "canary-hash": demoCanaryHash, "levitated-token": "lev_unused"}
	// Argo Rollouts' own argument resolution, as its controller makes the
	// AnalysisRun of the step: the passed arguments over the template's
	// defaults (utils/analysis.MergeArgs), then the metric's JSON templated
	// (utils/analysis.ResolveMetricArgs, whose package needs
	// k8s.io/kubernetes, so its two steps are repeated here).
	resolved := func(t *testing.T, path string) argov1alpha1.Metric {
		tpl := analysisTemplate(t, example(t, path, u, nil)[0])
		var merged []argov1alpha1.Argument
		for _, a := range tpl.Spec.Args {
			if v, ok := args[a.Name]; ok {
				a.Value = &v
			}
			require.NotNil(t, a.Value, "%s: argument %s has no value", path, a.Name)
			merged = append(merged, a)
		}
		b, err := json.Marshal(tpl.Spec.Metrics[0])
		require.NoError(t, err)
		str, err := templateutil.ResolveQuotedArgs(string(b), merged)
		require.NoError(t, err)
		var m argov1alpha1.Metric
		require.NoError(t, json.Unmarshal([]byte(str), &m))
		return m
	}

	for _, f := range []string{"argo-rollouts/canary-stage-gate.yaml", "argo-rollouts/analysis-prometheus.yaml"} {
		metric := resolved(t, f)
		api, err := argoprom.NewPrometheusAPI(metric)
		require.NoError(t, err)
		p, err := argoprom.NewPrometheusProvider(queryAt{api, s.end}, *log.NewEntry(log.New()), metric)
		require.NoError(t, err)
		got := p.Run(&argov1alpha1.AnalysisRun{}, metric)
		require.Equal(t, phase, got.Phase, "%s at %s: %s %s", f, s.key(), got.Message, got.Value)
	}

	metric := resolved(t, "argo-rollouts/canary-stage-judge.yaml")
	client, err := webmetric.NewWebMetricHttpClient(metric)
	require.NoError(t, err)
	parser, err := webmetric.NewWebMetricJsonParser(metric)
	require.NoError(t, err)
	got := webmetric.NewWebMetricProvider(*log.NewEntry(log.New()), client, parser).Run(&argov1alpha1.AnalysisRun{}, metric)
	require.Equal(t, phase, got.Phase, "canary-stage-judge.yaml at %s: %s %s", s.key(), got.Message, got.Value)
	require.Contains(t, got.Value, `"verdict":`+strconv.Quote(s.verdict), "the Web provider reads the demo's verdict")

	docs := example(t, "argo-rollouts/analysis-kayenta.yaml", u, nil)
	if !configStored[u] {
		var cm corev1.ConfigMap
		require.NoError(t, yaml.UnmarshalStrict(docs[1], &cm))
		post(t, u+"/canaryConfig", cm.Data["checkout-canary.json"])
		configStored[u] = true
	}
	metric = resolved(t, "argo-rollouts/analysis-kayenta.yaml")
	// The AnalysisRun measures at the stage's end: Argo sets the scopes
	// from now minus the interval to now.
	timeutil.SetNowTimeFunc(func() time.Time { return s.end })
	defer timeutil.SetNowTimeFunc(time.Now)
	run := &argov1alpha1.AnalysisRun{Status: argov1alpha1.AnalysisRunStatus{StartedAt: &metav1.Time{Time: s.end}}}
	kp := argokayenta.NewKayentaProvider(*log.NewEntry(log.New()), argokayenta.NewHttpClient())
	got = kp.Run(run, metric)
	for i := 0; got.Phase == argov1alpha1.AnalysisPhaseRunning; i++ {
		require.Less(t, i, 3000)
		time.Sleep(10 * time.Millisecond)
		got = kp.Resume(run, metric, got)
	}
	require.Equal(t, phase, got.Phase, "analysis-kayenta.yaml at %s: %s score %s", s.key(), got.Message, got.Value)
}

// TestDemoWithArgoRolloutsProviders runs `levitated demo --pause` (the real
// binary) and, while it is paused after each stage, runs the Argo Rollouts
// AnalysisTemplates of deploy/argo-rollouts through Argo Rollouts' own
// providers against the demo's levitated, as the AnalysisRun of that stage
// would (runArgoTemplates). The healthy canary is Successful at every
// stage; the canary that regresses at 40 % is Successful at 20 % and Failed
// at 40 %, where the demo rolls it back.
func TestDemoWithArgoRolloutsProviders(t *testing.T) {
	report := filepath.Join(t.TempDir(), "demo.html")
	seen := map[string]bool{}
	configStored := map[string]bool{}
	out := playDemo(t, []string{"--report", report}, func(s demoStage) {
		phase, ok := demoPhases[s.key()]
		require.True(t, ok, "unexpected stage %s", s.key())
		seen[s.key()] = true
		require.Equal(t, demoVerdict[phase], s.verdict, "the demo's own verdict at %s", s.key())
		t.Run(s.key(), func(t *testing.T) { runArgoTemplates(t, s.url, s, phase, configStored) })
	})
	checkDemoOutcomes(t, seen, out)
	fi, err := os.Stat(report)
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(10000), fmt.Sprint("report ", report))
}

// stageWindow finds the demo's stage s on levitated at u through the
// events API, as a pipeline or a person would: the latest canary-step
// window of the service with the stage's weight. It must be the stage the
// demo played (closed, from its start to its end).
func stageWindow(t *testing.T, u string, s demoStage) (start, end time.Time) {
	t.Helper()
	q := url.Values{"name": {"canary-step"}, "match": {`service="checkout"`, fmt.Sprintf(`weight="%d"`, s.weight)}, "limit": {"1000"}}
	var list struct {
		Events []struct {
			State  string `json:"state"`
			Window *struct {
				Start time.Time  `json:"start"`
				End   *time.Time `json:"end"`
				Open  bool       `json:"open"`
			} `json:"window"`
		} `json:"events"`
	}
	require.NoError(t, json.Unmarshal(get(t, u+"/api/v1/events?"+q.Encode()), &list))
	for _, e := range list.Events {
		if w := e.Window; e.State == "stop" && w != nil && !w.Open && w.End != nil && w.Start.After(start) {
			start, end = w.Start, *w.End
		}
	}
	require.False(t, start.IsZero(), "no closed canary-step window of weight %d in the events API", s.weight)
	require.True(t, start.Equal(s.start) && end.Equal(s.end), "the events API's window [%s, %s) is the stage %s played [%s, %s)", start, end, s.key(), s.start, s.end)
	return start, end
}

// flaggerAt is an address for Flagger's Prometheus provider at which
// levitated at u evaluates instant queries at the time at: the provider
// asks /api/v1/query without a time (the server's clock), and Flagger's
// analysis of a stage runs at the stage's end, which the demo plays in
// simulated time. Only the time parameter is added; levitated answers.
func flaggerAt(t *testing.T, u string, at time.Time) string {
	t.Helper()
	target, err := url.Parse(u)
	require.NoError(t, err)
	srv := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		q := r.Out.URL.Query()
		if q.Get("time") == "" {
			q.Set("time", strconv.FormatInt(at.Unix(), 10))
		}
		r.Out.URL.RawQuery = q.Encode()
	}})
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDemoURLWithTemplates is the newcomer's path: levitated running, the
// demo's data sent into it with `levitated demo --url` (the real binary,
// paused after each stage), each stage's window found through the events
// API, and the deploy templates run against that levitated through the
// controllers' own providers at the stage's end:
//   - argo-rollouts: the demo's pods as an Argo Rollouts Rollout's; the
//     stage gate, the stage judge, analysis-prometheus.yaml and
//     analysis-kayenta.yaml (runArgoTemplates);
//   - flagger: `--controller flagger`, the pods as Flagger's primary and
//     canary Deployments'; deploy/flagger's MetricTemplate through Flagger's
//     Prometheus provider and the Canary's threshold, as
//     TestDeployExampleFlagger runs it.
//
// The healthy stages pass, the stage at which the canary regressed (40 %)
// fails, in both.
func TestDemoURLWithTemplates(t *testing.T) {
	t.Run("argo-rollouts", func(t *testing.T) {
		u := start(t)
		seen := map[string]bool{}
		configStored := map[string]bool{}
		out := playDemo(t, []string{"--url", u, "--report", ""}, func(s demoStage) {
			phase, ok := demoPhases[s.key()]
			require.True(t, ok, "unexpected stage %s", s.key())
			seen[s.key()] = true
			require.Equal(t, u, s.url)
			require.Equal(t, demoVerdict[phase], s.verdict, "the demo's own verdict at %s", s.key())
			s.start, s.end = stageWindow(t, u, s)
			t.Run(s.key(), func(t *testing.T) { runArgoTemplates(t, u, s, phase, configStored) })
		})
		checkDemoOutcomes(t, seen, out)
	})

	t.Run("flagger", func(t *testing.T) {
		u := start(t)
		seen := map[string]bool{}
		out := playDemo(t, []string{"--url", u, "--controller", "flagger", "--report", ""}, func(s demoStage) {
			phase, ok := demoPhases[s.key()]
			require.True(t, ok, "unexpected stage %s", s.key())
			seen[s.key()] = true
			require.Equal(t, demoVerdict[phase], s.verdict, "the demo's own verdict (the Canary webhook's request) at %s", s.key())
			_, end := stageWindow(t, u, s)
			t.Run(s.key(), func(t *testing.T) {
				docs := example(t, "flagger/metric-template-analysis.yaml", flaggerAt(t, u, end), nil)
				var mt flaggerv1.MetricTemplate
				require.NoError(t, yaml.UnmarshalStrict(docs[0], &mt))
				provider, err := flagger.NewPrometheusProvider(mt.Spec.Provider, nil)
				require.NoError(t, err)
				query := strings.NewReplacer("{{ namespace }}", "shop", "{{ target }}", "checkout").Replace(mt.Spec.Query)
				v, err := provider.RunQuery(query)
				require.NoError(t, err)
				// The canary's pods only, not diluted by the primary's:
				// Flagger's canary Deployment keeps app=checkout, the
				// primary's pods have app=checkout-primary.
				own, err := provider.RunQuery(`100 * sum(increase(http_requests_total{namespace="shop", app="checkout", code=~"5.."}[5m]))
					/ sum(increase(http_requests_total{namespace="shop", app="checkout"}[5m]))`)
				require.NoError(t, err)
				require.InDelta(t, own, v, 0.1*own, "the MetricTemplate's error percentage at %s is the canary pods' (%v)", s.key(), own)
				var canary flaggerv1.Canary
				require.NoError(t, yaml.UnmarshalStrict(docs[1], &canary))
				metric := canary.Spec.Analysis.Metrics[0]
				require.Equal(t, mt.Name, metric.TemplateRef.Name)
				pass := v <= *metric.ThresholdRange.Max
				require.Equal(t, phase == argov1alpha1.AnalysisPhaseSuccessful, pass,
					"Flagger's threshold check at %s: the canary pods' error percentage %v against max %v", s.key(), v, *metric.ThresholdRange.Max)
			})
		})
		checkDemoOutcomes(t, seen, out)
	})
}
