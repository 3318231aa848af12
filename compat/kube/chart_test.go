package kube

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// kubectl runs kubectl (the image's /usr/bin/kubectl) on the environment's
// API server.
func kubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kubectl")
	require.NoError(t, err, "kubectl is needed to apply manifests server-side")
	cmd := exec.Command(path, append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), "kubectl %s:\n%s", strings.Join(args, " "), out.String())
	return out.String()
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("helm")
	if err != nil {
		gopath, gerr := exec.Command("go", "env", "GOPATH").Output()
		require.NoError(t, gerr)
		path = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm")
	}
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "helm is installed by .ci/run (go install helm.sh/helm/v3/cmd/helm@v3.22.0): %s", stderr.String())
	return out
}

// TestManifestsAccepted applies, server-side, the Helm chart rendered with
// the default and the production values (kube-events included), the plain
// manifests of deploy/kubernetes, and, once their CRDs are installed, the
// Argo Rollouts examples and Flagger's MetricTemplate and Canary: the real
// API server accepts every object (its validation, the CRDs' schemas).
func TestManifestsAccepted(t *testing.T) {
	t.Parallel()
	for _, ns := range []string{"monitoring", "monitoring-prod", "shop"} {
		namespace(t, ns)
	}
	for _, crd := range []string{peer("FLAGGER_CRD"), peer("SERVICEMONITOR_CRD")} {
		b, err := os.ReadFile(crd)
		require.NoError(t, err)
		kubectl(t, b, "apply", "--server-side", "-f", "-")
	}
	kubectl(t, nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/metrictemplates.flagger.app", "crd/canaries.flagger.app")

	chart := "../../deploy/helm/levitated"
	// Each values file as its own release in its own namespace (a
	// StatefulSet's volume claims cannot change in place).
	for ns, values := range map[string][]string{"monitoring": nil, "monitoring-prod": {"-f", chart + "/ci/production-values.yaml"}} {
		rendered := helm(t, append([]string{"template", "levitated", chart, "--namespace", ns}, values...)...)
		out := kubectl(t, rendered, "apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-")
		t.Logf("chart %v:\n%s", values, out)
		require.Equal(t, strings.Count(string(rendered), "\nkind: "), strings.Count(out, "serverside-applied"), "every object applied")
	}
	// The HA pair behind a Thanos Querier (deploy/thanos): two releases in
	// one namespace, and the Querier with its NetworkPolicy.
	namespace(t, "monitoring-ha")
	for _, r := range []string{"a", "b"} {
		rendered := helm(t, "template", "levitated-"+r, chart, "--namespace", "monitoring-ha", "-f", "../../deploy/thanos/values-replica-"+r+".yaml")
		require.Contains(t, string(rendered), "--external-label=replica="+r)
		out := kubectl(t, rendered, "apply", "--server-side", "--force-conflicts", "-n", "monitoring-ha", "-f", "-")
		require.Equal(t, strings.Count(string(rendered), "\nkind: "), strings.Count(out, "serverside-applied"), "every object of replica %s applied", r)
	}
	querier, err := os.ReadFile("../../deploy/thanos/querier.yaml")
	require.NoError(t, err)
	out := kubectl(t, querier, "apply", "--server-side", "-n", "monitoring-ha", "-f", "-")
	require.Equal(t, 3, strings.Count(out, "serverside-applied"), "the Querier's Deployment, Service and NetworkPolicy: %s", out)

	plain, err := os.ReadFile("../../deploy/kubernetes/levitated.yaml")
	require.NoError(t, err)
	kubectl(t, plain, "apply", "--server-side", "--force-conflicts", "-n", "monitoring", "-f", "-")

	paths, err := filepath.Glob(argoDir + "/*.yaml")
	require.NoError(t, err)
	paths = append(paths, "../../deploy/flagger/metric-template-analysis.yaml")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		// Objects without a namespace go to the kubeconfig's, "default".
		out := kubectl(t, b, "apply", "--server-side", "-f", "-")
		t.Logf("%s:\n%s", filepath.Base(p), out)
	}
	// What was applied is there, as written.
	out = kubectl(t, nil, "get", "-A", "rollouts.argoproj.io,analysistemplates.argoproj.io,metrictemplates.flagger.app,canaries.flagger.app,statefulsets,deployments", "-o", "name")
	for _, want := range []string{
		"rollout.argoproj.io/checkout", "analysistemplate.argoproj.io/canary-stage-judge", "analysistemplate.argoproj.io/canary-stage-gate",
		"analysistemplate.argoproj.io/kayenta-canary", "analysistemplate.argoproj.io/levitated-canary", "analysistemplate.argoproj.io/error-ratio-since-step",
		"metrictemplate.flagger.app/error-ratio-since-step", "canary.flagger.app/checkout",
		"statefulset.apps/levitated", "deployment.apps/levitated-kube-events",
	} {
		require.Contains(t, out, want)
	}
}
