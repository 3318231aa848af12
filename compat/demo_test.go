package compat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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

// TestDemoWithArgoRolloutsProviders runs `levitated demo --pause` (the real
// binary) and, while it is paused after each stage, runs the Argo Rollouts
// AnalysisTemplates of deploy/argo-rollouts through Argo Rollouts' own
// providers against the demo's levitated, as the AnalysisRun of that stage
// would: the stage gate (Prometheus provider), the stage judge (Web
// provider), analysis-prometheus.yaml and analysis-kayenta.yaml (Kayenta
// provider, its 5-minute interval ending at the stage's end). The healthy
// canary is Successful at every stage; the canary that regresses at 40 % is
// Successful at 20 % and Failed at 40 %, where the demo rolls it back.
func TestDemoWithArgoRolloutsProviders(t *testing.T) {
	report := filepath.Join(t.TempDir(), "demo.html")
	cmd := exec.Command(binary, "demo", "--pause", "--report", report)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()

	want := map[string]argov1alpha1.AnalysisPhase{
		"healthy/20": argov1alpha1.AnalysisPhaseSuccessful, "healthy/40": argov1alpha1.AnalysisPhaseSuccessful,
		"healthy/60": argov1alpha1.AnalysisPhaseSuccessful, "healthy/80": argov1alpha1.AnalysisPhaseSuccessful,
		"regression/20": argov1alpha1.AnalysisPhaseSuccessful, "regression/40": argov1alpha1.AnalysisPhaseFailed,
	}
	seen := map[string]bool{}
	configStored := map[string]bool{}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		m := pausedRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		run, weight, verdict, u := m[1], m[2], m[3], m[6]
		end, err := time.Parse(time.RFC3339, m[5])
		require.NoError(t, err)
		key := run + "/" + weight
		phase, ok := want[key]
		require.True(t, ok, "unexpected stage %s", key)
		seen[key] = true
		require.Equal(t, map[argov1alpha1.AnalysisPhase]string{argov1alpha1.AnalysisPhaseSuccessful: "Pass", argov1alpha1.AnalysisPhaseFailed: "Fail"}[phase], verdict,
			"the demo's own verdict at %s", key)
		// The demo's levitated listens on loopback without tokens: any
		// token is accepted.
		args := map[string]string{"service": "checkout", "stable-hash": demoStableHash, "canary-hash": demoCanaryHash, "levitated-token": "lev_unused"}
		// Argo Rollouts' own argument resolution, as its controller makes
		// the AnalysisRun of the step: the passed arguments over the
		// template's defaults (utils/analysis.MergeArgs), then the metric's
		// JSON templated (utils/analysis.ResolveMetricArgs, whose package
		// needs k8s.io/kubernetes, so its two steps are repeated here).
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
			s, err := templateutil.ResolveQuotedArgs(string(b), merged)
			require.NoError(t, err)
			var m argov1alpha1.Metric
			require.NoError(t, json.Unmarshal([]byte(s), &m))
			return m
		}

		t.Run(key, func(t *testing.T) {
			for _, f := range []string{"argo-rollouts/canary-stage-gate.yaml", "argo-rollouts/analysis-prometheus.yaml"} {
				metric := resolved(t, f)
				api, err := argoprom.NewPrometheusAPI(metric)
				require.NoError(t, err)
				p, err := argoprom.NewPrometheusProvider(api, *log.NewEntry(log.New()), metric)
				require.NoError(t, err)
				got := p.Run(&argov1alpha1.AnalysisRun{}, metric)
				require.Equal(t, phase, got.Phase, "%s: %s %s", f, got.Message, got.Value)
			}

			metric := resolved(t, "argo-rollouts/canary-stage-judge.yaml")
			client, err := webmetric.NewWebMetricHttpClient(metric)
			require.NoError(t, err)
			parser, err := webmetric.NewWebMetricJsonParser(metric)
			require.NoError(t, err)
			got := webmetric.NewWebMetricProvider(*log.NewEntry(log.New()), client, parser).Run(&argov1alpha1.AnalysisRun{}, metric)
			require.Equal(t, phase, got.Phase, "canary-stage-judge.yaml: %s %s", got.Message, got.Value)
			require.Contains(t, got.Value, `"verdict":`+strconv.Quote(verdict), "the Web provider reads the demo's verdict")

			docs := example(t, "argo-rollouts/analysis-kayenta.yaml", u, nil)
			if !configStored[u] {
				var cm corev1.ConfigMap
				require.NoError(t, yaml.UnmarshalStrict(docs[1], &cm))
				post(t, u+"/canaryConfig", cm.Data["checkout-canary.json"])
				configStored[u] = true
			}
			metric = resolved(t, "argo-rollouts/analysis-kayenta.yaml")
			// The AnalysisRun measures at the stage's end: Argo sets the
			// scopes from now minus the interval to now.
			timeutil.SetNowTimeFunc(func() time.Time { return end })
			defer timeutil.SetNowTimeFunc(time.Now)
			run := &argov1alpha1.AnalysisRun{Status: argov1alpha1.AnalysisRunStatus{StartedAt: &metav1.Time{Time: end}}}
			kp := argokayenta.NewKayentaProvider(*log.NewEntry(log.New()), argokayenta.NewHttpClient())
			got = kp.Run(run, metric)
			for i := 0; got.Phase == argov1alpha1.AnalysisPhaseRunning; i++ {
				require.Less(t, i, 3000)
				time.Sleep(10 * time.Millisecond)
				got = kp.Resume(run, metric, got)
			}
			require.Equal(t, phase, got.Phase, "analysis-kayenta.yaml: %s score %s", got.Message, got.Value)
		})
		_, err = io.WriteString(stdin, "\n")
		require.NoError(t, err)
	}
	require.NoError(t, sc.Err())
	require.NoError(t, cmd.Wait(), out.String())
	require.Len(t, seen, len(want), "stages judged: %v\n%s", seen, out.String())
	require.Contains(t, out.String(), "-> PROMOTED")
	require.Contains(t, out.String(), "-> ROLLED BACK")
	fi, err := os.Stat(report)
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(10000), fmt.Sprint("report ", report))
}
