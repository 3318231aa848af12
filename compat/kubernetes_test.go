package compat

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "rbac.authorization.k8s.io/v1 Role":
			obj = &rbacv1.Role{}
		case "rbac.authorization.k8s.io/v1 RoleBinding":
			obj = &rbacv1.RoleBinding{}
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
	require.Empty(t, sts.Spec.Template.Spec.Volumes, "no Secret by default")
	for _, a := range c.Args {
		require.NotContains(t, a, "--auth.", "no auth flag by default")
	}
	// No token given: the bootstrap init container makes one at the first
	// start (TestHelmChartBootstrapToken runs its command).
	require.Len(t, sts.Spec.Template.Spec.InitContainers, 1)
	require.Equal(t, "bootstrap-token", sts.Spec.Template.Spec.InitContainers[0].Name)

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
	require.Len(t, objs, 13, "plus the token Secret, the ServiceMonitor and kube-events (Deployment, ServiceAccount, ClusterRole and binding, state Role and binding): %v", keys(objs))

	sts := objs["StatefulSet/levitated"].(*appsv1.StatefulSet)
	c := sts.Spec.Template.Spec.Containers[0]
	require.Contains(t, c.Args, "--storage.retention=720h")
	require.Contains(t, c.Args, "--query.max-samples=100000000")
	require.Contains(t, c.Args, "--write.max-labels-per-series=64")
	for _, a := range c.Args {
		require.NotContains(t, a, "--auth.", "tokens need no flag: they are installed as /data/tokens.json")
	}
	require.Len(t, sts.Spec.Template.Spec.InitContainers, 2)
	require.Equal(t, "install-tokens", sts.Spec.Template.Spec.InitContainers[0].Name)
	require.Equal(t, "provision-tokens", sts.Spec.Template.Spec.InitContainers[1].Name)
	require.Equal(t, "--log.level=warn", c.Args[len(c.Args)-1], "extraArgs come last")
	require.Equal(t, "16Gi", c.Resources.Limits.Memory().String())
	require.Equal(t, "fast-ssd", *sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName)
	require.Equal(t, "200Gi", sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String())
	require.NotEmpty(t, sts.Spec.Template.Annotations["checksum/auth"])
	require.Equal(t, "platform", sts.Spec.Template.Annotations["example.com/team"])
	require.Equal(t, "levitated-tokens", sts.Spec.Template.Spec.Volumes[0].Secret.SecretName)
	require.Equal(t, "levitated-analysis-token", sts.Spec.Template.Spec.Volumes[1].Secret.SecretName)
	require.NotContains(t, objs["Secret/levitated-tokens"].(*corev1.Secret).StringData["tokens.json"], "lev_", "hashes only")

	sm := objs["ServiceMonitor/levitated"].(*monitoringv1.ServiceMonitor)
	require.Equal(t, "kube-prometheus-stack", sm.Labels["release"])
	require.Equal(t, "http", sm.Spec.Endpoints[0].Port)
	require.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
	require.Equal(t, monitoringv1.Duration("15s"), sm.Spec.Endpoints[0].Interval)
	require.Equal(t, "levitated-scrape", sm.Spec.Endpoints[0].Authorization.Credentials.Name)
	// It selects the main Service, not the headless one.
	svc := objs["Service/levitated"].(*corev1.Service)
	headless := objs["Service/levitated-headless"].(*corev1.Service)
	for k, v := range sm.Spec.Selector.MatchLabels {
		require.Equal(t, v, svc.Labels[k])
	}
	require.Equal(t, "app.kubernetes.io/component", sm.Spec.Selector.MatchExpressions[0].Key)
	require.NotContains(t, svc.Labels, "app.kubernetes.io/component")
	require.Contains(t, headless.Labels, "app.kubernetes.io/component")

	// kube-events: its own pods, which the Services do not select.
	ke := objs["Deployment/levitated-kube-events"].(*appsv1.Deployment)
	kc := ke.Spec.Template.Spec.Containers[0]
	require.Equal(t, c.Image, kc.Image)
	require.Equal(t, []string{"kube-events", "--levitated.url=http://levitated.monitoring.svc:9090", "--state.name=levitated-kube-events",
		"--log.level=info", "--selector=app.kubernetes.io/part-of=shop", "--levitated.token-file=/var/run/levitated/token"}, kc.Args)
	require.Equal(t, "levitated-kube-events", ke.Spec.Template.Spec.ServiceAccountName)
	for _, s := range []*corev1.Service{svc, headless} {
		matches := true
		for k, v := range s.Spec.Selector {
			matches = matches && ke.Spec.Template.Labels[k] == v
		}
		require.False(t, matches, "Service %s selects the kube-events pods", s.Name)
	}
	require.Equal(t, "levitated-kube-events", objs["ClusterRoleBinding/levitated-kube-events"].(*rbacv1.ClusterRoleBinding).Subjects[0].Name)
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
					require.True(t, a.Value != nil || a.ValueFrom != nil || passed[a.Name], "%s: argument %s is not passed", tpl.TemplateName, a.Name)
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

// startWithData runs the binary on 127.0.0.1:0 over dataDir and returns its
// URL; it is stopped at cleanup.
func startWithData(t *testing.T, dataDir string) string {
	t.Helper()
	cmd := exec.Command(binary, "--listen-address=127.0.0.1:0", "--data-dir="+dataDir)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		require.NoError(t, cmd.Wait())
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return "http://" + m[1]
		}
	}
	t.Fatal("levitated did not start")
	return ""
}

// status GETs u with a bearer token and returns the status code.
func status(t *testing.T, u, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestHelmChartTokenFile runs the production values' init containers as
// the pod would (with /data a temporary directory, the Secrets as files and
// levitated the binary): the token file the chart renders from auth.tokens
// is installed, the token of auth.tokenSecrets added to it; then levitated
// on that directory accepts both with their scopes.
func TestHelmChartTokenFile(t *testing.T) {
	objs := decodeObjects(t, helmTemplate(t, "-f", "../deploy/helm/levitated/ci/production-values.yaml"))
	secret := objs["Secret/levitated-tokens"].(*corev1.Secret)
	inits := objs["StatefulSet/levitated"].(*appsv1.StatefulSet).Spec.Template.Spec.InitContainers
	data, etc := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(etc, "auth"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(etc, "auth/tokens.json"), []byte(secret.StringData["tokens.json"]), 0o600))
	const analysis = "lev_a0a1a2a3a4a5a6a7_" + "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	require.NoError(t, os.MkdirAll(filepath.Join(etc, "token-secrets/0"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(etc, "token-secrets/0/token"), []byte(analysis+"\n"), 0o600))
	paths := strings.NewReplacer("/etc/levitated", etc, "/data", data, "levitated token", binary+" token")
	for round := 0; round < 2; round++ { // every start runs them: the second changes nothing
		for _, c := range inits {
			require.Equal(t, "sh", c.Command[0])
			args := append(slices.Clone(c.Command[1:len(c.Command)-1]), paths.Replace(c.Command[len(c.Command)-1]))
			out, err := exec.Command("sh", args...).CombinedOutput()
			require.NoError(t, err, "%s: %s", c.Name, out)
		}
	}
	var file struct {
		Tokens []struct {
			ID string `json:"id"`
		} `json:"tokens"`
	}
	b, err := os.ReadFile(filepath.Join(data, "tokens.json"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &file))
	require.Len(t, file.Tokens, 4, "the three of auth.tokens and the Secret's, once: %s", b)

	// The provisioning alone, run again, changes nothing.
	prov := inits[1]
	out, err := exec.Command("sh", "-ec", paths.Replace(prov.Command[2])).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "is already stored")
	u := startWithData(t, data)

	const teamA = "lev_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	const ops = "lev_00000000000000ff_ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
	require.Equal(t, http.StatusOK, status(t, u+"/api/v1/labels", teamA))
	require.Equal(t, http.StatusForbidden, status(t, u+"/metrics", teamA), "team-a has no admin scope")
	require.Equal(t, http.StatusOK, status(t, u+"/metrics", ops), "scopes: [all]")
	require.Equal(t, http.StatusOK, status(t, u+"/api/v1/labels", analysis), "the token of the Secret")
	require.Equal(t, http.StatusForbidden, status(t, u+"/metrics", analysis))
	require.Equal(t, http.StatusUnauthorized, status(t, u+"/api/v1/labels", teamA[:len(teamA)-1]+"0"))
	require.Equal(t, http.StatusOK, status(t, u+"/-/ready", ""))
}

// TestHelmChartBootstrapToken runs the default values' init container
// command (with /data a temporary directory and levitated the binary): the
// first start prints a token that authenticates; the second makes none.
func TestHelmChartBootstrapToken(t *testing.T) {
	objs := decodeObjects(t, helmTemplate(t))
	init := objs["StatefulSet/levitated"].(*appsv1.StatefulSet).Spec.Template.Spec.InitContainers[0]
	require.Equal(t, []string{"sh", "-c"}, init.Command[:2])
	data := t.TempDir()
	script := strings.NewReplacer("/data", data, "levitated token", binary+" token").Replace(init.Command[2])
	out, err := exec.Command("sh", "-c", script).Output()
	require.NoError(t, err)
	token := strings.TrimSpace(string(out))
	require.Regexp(t, `^lev_[0-9a-f]{16}_[0-9a-f]{64}$`, token)
	out, err = exec.Command("sh", "-c", script).Output()
	require.NoError(t, err)
	require.NotContains(t, string(out), "lev_", "a restart makes no second token")

	u := startWithData(t, data)
	require.Equal(t, http.StatusOK, status(t, u+"/metrics", token))
	require.Equal(t, http.StatusUnauthorized, status(t, u+"/api/v1/labels", "lev_0000000000000000_"+strings.Repeat("0", 64)))
}

// TestHelmChartNotes renders NOTES.txt: helm template skips it, so a copy
// of the chart renders it as a named template inside a YAML document.
func TestHelmChartNotes(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("../deploy/helm/levitated")))
	notesPath := filepath.Join(dir, "templates/NOTES.txt")
	notes, err := os.ReadFile(notesPath)
	require.NoError(t, err)
	require.NoError(t, os.Remove(notesPath))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "templates/_notes.tpl"), []byte(`{{- define "notes" -}}`+string(notes)+`{{- end -}}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "templates/notes.yaml"), []byte(`notes: {{ include "notes" . | toJson }}`+"\n"), 0o644))
	cmd := exec.Command(helmBinary(t), "template", "levitated", dir, "--namespace", "monitoring", "--show-only", "templates/notes.yaml")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	var rendered struct {
		Notes string `json:"notes"`
	}
	require.NoError(t, yaml.Unmarshal(out, &rendered))
	n := rendered.Notes
	t.Log("\n" + n)
	require.Contains(t, n, "http://levitated.monitoring.svc:9090/api/v1/write", "the remote-write URL")
	require.Contains(t, n, "  http://levitated.monitoring.svc:9090\n", "the Grafana data source URL")
	require.Contains(t, n, "eventctl start deploy --attr service=checkout", "a first eventctl command")
	require.Contains(t, n, "logs levitated-0 -c bootstrap-token")
	require.NotContains(t, n, "<no value>")
}

// TestHelmChartRefusesNoCredential: with the bootstrap token turned off and
// no other credential, the chart fails to render, as levitated would fail
// to start, saying what to set.
func TestHelmChartRefusesNoCredential(t *testing.T) {
	cmd := exec.Command(helmBinary(t), "template", "levitated", "../deploy/helm/levitated", "--set", "auth.bootstrapToken=false")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "levitated refuses to serve on the pod network without a credential: set auth.tokens")
}
