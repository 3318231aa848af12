package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"sigs.k8s.io/yaml"
)

// argoDir holds the Argo Rollouts examples the tests run.
const argoDir = "../../deploy/argo-rollouts"

// doc is one document of a YAML stream, with its kind and name.
type doc struct {
	Kind, Name string
	JSON       []byte
}

// readDocs reads a multi-document YAML file into JSON documents.
func readDocs(t testing.TB, path string) []doc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []doc
	for _, d := range strings.Split("\n"+string(b), "\n---") {
		j, err := yaml.YAMLToJSON([]byte(d))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if string(j) == "null" || len(strings.TrimSpace(string(j))) == 0 {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(j, &meta); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc{Kind: meta.Kind, Name: meta.Metadata.Name, JSON: j})
	}
	return docs
}

// analysisTemplates reads every AnalysisTemplate of deploy/argo-rollouts,
// by file name.
func analysisTemplates(t testing.TB) map[string]*argov1alpha1.AnalysisTemplate {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(argoDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*argov1alpha1.AnalysisTemplate{}
	for _, p := range paths {
		for _, d := range readDocs(t, p) {
			if d.Kind != "AnalysisTemplate" {
				continue
			}
			var at argov1alpha1.AnalysisTemplate
			if err := json.Unmarshal(d.JSON, &at); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out[filepath.Base(p)] = &at
		}
	}
	return out
}

// createIn creates an object (JSON) in a namespace through its collection
// path, e.g. "/apis/argoproj.io/v1alpha1/namespaces/%s/analysistemplates".
func createIn(t testing.TB, collection, ns string, obj []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatal(err)
	}
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		m["metadata"] = meta
	}
	meta["namespace"] = ns
	b, _ := json.Marshal(m)
	if err := env.create(context.Background(), fmt.Sprintf(collection, ns), b); err != nil {
		t.Fatal(err)
	}
}

// analysisTokenSecret creates the Secret the gate and judge templates read
// their levitated token from; levitated here has no authentication, so
// any value will do, as the templates say.
func analysisTokenSecret(t testing.TB, ns string) {
	t.Helper()
	createIn(t, "/api/v1/namespaces/%s/secrets", ns, []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"levitated-analysis-token"},"stringData":{"token":"unused"}}`))
}

// getAnalysisRun reads an AnalysisRun.
func getAnalysisRun(t testing.TB, ns, name string) *argov1alpha1.AnalysisRun {
	t.Helper()
	var ar argov1alpha1.AnalysisRun
	if err := env.get(context.Background(), fmt.Sprintf("/apis/argoproj.io/v1alpha1/namespaces/%s/analysisruns/%s", ns, name), &ar); err != nil {
		t.Fatal(err)
	}
	return &ar
}

// describeRun summarises an AnalysisRun's status for failure messages.
func describeRun(ar *argov1alpha1.AnalysisRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: phase %s %q", ar.Name, ar.Status.Phase, ar.Status.Message)
	for _, mr := range ar.Status.MetricResults {
		fmt.Fprintf(&b, "\n  metric %s: %s %q (count %d, successful %d, failed %d, inconclusive %d, error %d)",
			mr.Name, mr.Phase, mr.Message, mr.Count, mr.Successful, mr.Failed, mr.Inconclusive, mr.Error)
		for _, m := range mr.Measurements {
			fmt.Fprintf(&b, "\n    %s value %q %q", m.Phase, m.Value, m.Message)
		}
	}
	return b.String()
}

// httpGetJSON reads a levitated API answer.
func httpGetJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// background runs f every period until the test ends.
func background(t testing.TB, period time.Duration, f func()) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				f()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}
