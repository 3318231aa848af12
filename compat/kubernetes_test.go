package compat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The Helm chart (deploy/helm/levitated), rendered by helm with the default
// values and with ci/production-values.yaml, and the plain manifests in
// deploy/kubernetes, decoded strictly into Kubernetes' typed API objects: an
// unknown or misspelt field, or a value of the wrong type, fails.

// helmBinary finds helm; .ci/run installs it (go install
// helm.sh/helm/v3/cmd/helm@v3.22.0). Without it the test fails in CI and
// skips elsewhere.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("helm is not installed: go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	}
	t.Skip("helm is not installed: go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	return ""
}

func helmTemplate(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helmBinary(t), append([]string{"template", "levitated", "../deploy/helm/levitated", "--namespace", "monitoring"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	return out
}

// splitYAML splits a multi-document YAML stream, dropping empty documents.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range strings.Split("\n"+string(b), "\n---") {
		var body []string
		for _, line := range strings.Split(d, "\n") {
			if strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#") {
				body = append(body, line)
			}
		}
		if len(body) > 0 {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decodeObjects decodes every document strictly into the type of its kind
// and returns the objects by "Kind/name".
func decodeObjects(t *testing.T, stream []byte) map[string]any {
	t.Helper()
	objs := map[string]any{}
	for _, doc := range splitYAML(stream) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		require.NoError(t, yaml.Unmarshal(doc, &meta))
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1 Secret":
			obj = &corev1.Secret{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 Pod":
			obj = &corev1.Pod{}
		case "monitoring.coreos.com/v1 ServiceMonitor":
			obj = &monitoringv1.ServiceMonitor{}
		case "argoproj.io/v1alpha1 Rollout":
			obj = &argov1alpha1.Rollout{}
		case "argoproj.io/v1alpha1 AnalysisTemplate":
			obj = &argov1alpha1.AnalysisTemplate{}
		default:
			t.Fatalf("no type for %s %s (%s):\n%s", meta.APIVersion, meta.Kind, meta.Metadata.Name, doc)
		}
		require.NoError(t, yaml.UnmarshalStrict(doc, obj), "%s %s:\n%s", meta.Kind, meta.Metadata.Name, doc)
		key := meta.Kind + "/" + meta.Metadata.Name
		require.NotContains(t, objs, key, "two objects named %s", key)
		objs[key] = obj
	}
	return objs
}

func TestHelmChartDefaultValues(t *testing.T) {
	objs := decodeObjects(t, helmTemplate(t))
	require.Len(t, objs, 5, "ServiceAccount, two Services, StatefulSet, test Pod: %v", keys(objs))

	sts := objs["StatefulSet/levitated"].(*appsv1.StatefulSet)
	require.Equal(t, int32(1), *sts.Spec.Replicas)
	require.Equal(t, "levitated-headless", sts.Spec.ServiceName)
	c := sts.Spec.Template.Spec.Containers[0]
	require.Equal(t, "ghcr.io/levitated/levitated:0.1.0", c.Image)
	require.Contains(t, c.Args, "--listen-address=:9090")
	require.Contains(t, c.Args, "--data-dir=/data")
	require.Contains(t, c.Args, "--storage.retention=360h")
	require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "/-/ready", c.StartupProbe.HTTPGet.Path)
	require.Equal(t, "2Gi", c.Resources.Limits.Memory().String())
	require.Equal(t, "data", c.VolumeMounts[0].Name)
	require.Equal(t, "/data", c.VolumeMounts[0].MountPath)
	require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	require.Equal(t, int64(65534), *sts.Spec.Template.Spec.SecurityContext.RunAsUser)
	require.Len(t, sts.Spec.VolumeClaimTemplates, 1)
	require.Equal(t, "20Gi", sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String())
	require.Empty(t, sts.Spec.Template.Spec.Volumes, "no token Secret by default")
	for _, a := range c.Args {
		require.NotContains(t, a, "tokens", "no token flag by default")
	}

	svc := objs["Service/levitated"].(*corev1.Service)
	require.Len(t, svc.Spec.Ports, 2)
	require.Equal(t, "http", svc.Spec.Ports[0].Name)
	require.Equal(t, int32(9090), svc.Spec.Ports[0].Port)
	require.Equal(t, "grpc", svc.Spec.Ports[1].Name)
	require.Equal(t, "kubernetes.io/h2c", *svc.Spec.Ports[1].AppProtocol)
	require.Equal(t, "http", svc.Spec.Ports[1].TargetPort.StrVal, "gRPC is served on the HTTP port")
	require.Equal(t, "None", objs["Service/levitated-headless"].(*corev1.Service).Spec.ClusterIP)
	require.Equal(t, "test", objs["Pod/levitated-test-ready"].(*corev1.Pod).Annotations["helm.sh/hook"])

	// deploy/kubernetes is the same rendering without the test Pod
	// (deploy/check.sh keeps it up to date).
	plain, err := os.ReadFile("../deploy/kubernetes/levitated.yaml")
	require.NoError(t, err)
	plainObjs := decodeObjects(t, plain)
	require.Equal(t, len(objs)-1, len(plainObjs), "%v", keys(plainObjs))
	require.Equal(t, sts.Spec, plainObjs["StatefulSet/levitated"].(*appsv1.StatefulSet).Spec)
}

func TestHelmChartProductionValues(t *testing.T) {
	objs := decodeObjects(t, helmTemplate(t, "-f", "../deploy/helm/levitated/ci/production-values.yaml"))
	require.Len(t, objs, 7, "plus the token Secret and the ServiceMonitor: %v", keys(objs))

	sts := objs["StatefulSet/levitated"].(*appsv1.StatefulSet)
	c := sts.Spec.Template.Spec.Containers[0]
	require.Contains(t, c.Args, "--storage.retention=720h")
	require.Contains(t, c.Args, "--query.max-samples=100000000")
	require.Contains(t, c.Args, "--write.max-labels-per-series=64")
	require.Contains(t, c.Args, "--auth.tokens-file=/etc/levitated/auth/tokens.yaml")
	require.Equal(t, "--log.level=warn", c.Args[len(c.Args)-1], "extraArgs come last")
	require.Equal(t, "16Gi", c.Resources.Limits.Memory().String())
	require.Equal(t, "fast-ssd", *sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName)
	require.Equal(t, "200Gi", sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String())
	require.NotEmpty(t, sts.Spec.Template.Annotations["checksum/auth"])
	require.Equal(t, "platform", sts.Spec.Template.Annotations["example.com/team"])
	require.Equal(t, "levitated-auth", sts.Spec.Template.Spec.Volumes[0].Secret.SecretName)

	secret := objs["Secret/levitated-auth"].(*corev1.Secret)
	var tokens map[string]string
	require.NoError(t, yaml.UnmarshalStrict([]byte(secret.StringData["tokens.yaml"]), &tokens))
	require.Equal(t, map[string]string{"team-a": "token-for-team-a-change-me", "team-b": "token-for-team-b-change-me"}, tokens)

	sm := objs["ServiceMonitor/levitated"].(*monitoringv1.ServiceMonitor)
	require.Equal(t, "kube-prometheus-stack", sm.Labels["release"])
	require.Equal(t, "http", sm.Spec.Endpoints[0].Port)
	require.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
	require.Equal(t, monitoringv1.Duration("15s"), sm.Spec.Endpoints[0].Interval)
	// It selects the main Service, not the headless one.
	svc := objs["Service/levitated"].(*corev1.Service)
	headless := objs["Service/levitated-headless"].(*corev1.Service)
	for k, v := range sm.Spec.Selector.MatchLabels {
		require.Equal(t, v, svc.Labels[k])
	}
	require.Equal(t, "app.kubernetes.io/component", sm.Spec.Selector.MatchExpressions[0].Key)
	require.NotContains(t, svc.Labels, "app.kubernetes.io/component")
	require.Contains(t, headless.Labels, "app.kubernetes.io/component")
}

// TestArgoRolloutsManifests decodes the Rollout and the stage templates
// strictly into Argo Rollouts' types and checks that every template the
// Rollout names exists, with the arguments it passes.
func TestArgoRolloutsManifests(t *testing.T) {
	var all []byte
	for _, f := range []string{"rollout.yaml", "canary-stage-gate.yaml", "canary-stage-judge.yaml"} {
		b, err := os.ReadFile("../deploy/argo-rollouts/" + f)
		require.NoError(t, err)
		all = append(append(all, b...), "\n---\n"...)
	}
	objs := decodeObjects(t, all)
	ro := objs["Rollout/checkout"].(*argov1alpha1.Rollout)
	var weights []int32
	analyses := 0
	for _, s := range ro.Spec.Strategy.Canary.Steps {
		if s.SetWeight != nil {
			weights = append(weights, *s.SetWeight)
		}
		if s.Analysis != nil {
			analyses++
			for _, tpl := range s.Analysis.Templates {
				at, ok := objs["AnalysisTemplate/"+tpl.TemplateName].(*argov1alpha1.AnalysisTemplate)
				require.True(t, ok, "the Rollout names the template %s", tpl.TemplateName)
				passed := map[string]bool{}
				for _, a := range s.Analysis.Args {
					passed[a.Name] = true
				}
				for _, a := range at.Spec.Args {
					require.True(t, a.Value != nil || passed[a.Name], "%s: argument %s is not passed", tpl.TemplateName, a.Name)
				}
			}
		}
	}
	require.Equal(t, []int32{20, 40, 60, 80}, weights)
	require.Equal(t, 4, analyses, "an analysis after each stage")
	require.Equal(t, "checkout", objs["Service/checkout"].(*corev1.Service).Name)
}

func keys(m map[string]any) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return fmt.Sprint(out)
}

// TestStrictDecodingCatchesTypos shows the decoding above is strict: a
// misspelt field in the values reaches the StatefulSet and fails it.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	out := helmTemplate(t, "--set", "podSecurityContext.runAsUsr=1000")
	for _, doc := range splitYAML(out) {
		if !bytes.Contains(doc, []byte("kind: StatefulSet")) {
			continue
		}
		var sts appsv1.StatefulSet
		require.NoError(t, yaml.Unmarshal(doc, &sts))
		require.ErrorContains(t, yaml.UnmarshalStrict(doc, &sts), `unknown field "runAsUsr"`)
		return
	}
	t.Fatal("no StatefulSet rendered")
}
