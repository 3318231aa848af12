package demo

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/levitated/levitated/deploy"
)

// The deploy examples the demo runs, as written in deploy/ (embedded).
const (
	judgeTemplatePath = "argo-rollouts/canary-stage-judge.yaml"
	gateTemplatePath  = "argo-rollouts/canary-stage-gate.yaml"
	flaggerPath       = "flagger/metric-template-analysis.yaml"
	dashboardPath     = "grafana/dashboards/levitated-canary.json"
)

// analysisTemplate is the part of an Argo Rollouts AnalysisTemplate the
// demo reads.
type analysisTemplate struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Args []struct {
			Name      string  `yaml:"name"`
			Value     *string `yaml:"value"`
			ValueFrom any     `yaml:"valueFrom"`
		} `yaml:"args"`
		Metrics []struct {
			Name             string `yaml:"name"`
			SuccessCondition string `yaml:"successCondition"`
			FailureCondition string `yaml:"failureCondition"`
			Provider         struct {
				Web *struct {
					URL      string         `yaml:"url"`
					JSONPath string         `yaml:"jsonPath"`
					JSONBody map[string]any `yaml:"jsonBody"`
				} `yaml:"web"`
				Prometheus *struct {
					Query string `yaml:"query"`
				} `yaml:"prometheus"`
			} `yaml:"provider"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
}

// loadTemplate reads the first AnalysisTemplate of an example file with its
// arguments substituted as Argo Rollouts substitutes them: each
// {{args.NAME}} by the value given, or the argument's default (empty for
// one taken from a Secret).
func loadTemplate(path string, args map[string]string) (analysisTemplate, error) {
	b, err := fs.ReadFile(deploy.Examples, path)
	if err != nil {
		return analysisTemplate{}, fmt.Errorf("read %s: %w", path, err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var probe analysisTemplate
		if err := yaml.Unmarshal([]byte(doc), &probe); err != nil {
			return analysisTemplate{}, fmt.Errorf("parse %s: %w", path, err)
		}
		if probe.Kind != "AnalysisTemplate" {
			continue
		}
		values := map[string]string{}
		for _, a := range probe.Spec.Args {
			if v, ok := args[a.Name]; ok {
				values[a.Name] = v
			} else if a.Value != nil {
				values[a.Name] = *a.Value
			} else if a.ValueFrom != nil {
				values[a.Name] = "" // a Secret's value (a token): the demo needs none
			} else {
				return analysisTemplate{}, fmt.Errorf("%s: argument %q has no value", path, a.Name)
			}
		}
		for k, v := range values {
			doc = strings.ReplaceAll(doc, "{{args."+k+"}}", v)
		}
		if i := strings.Index(doc, "{{args."); i >= 0 {
			return analysisTemplate{}, fmt.Errorf("%s: undeclared argument at %q", path, doc[i:min(len(doc), i+40)])
		}
		var t analysisTemplate
		if err := yaml.Unmarshal([]byte(doc), &t); err != nil {
			return analysisTemplate{}, fmt.Errorf("parse %s: %w", path, err)
		}
		if len(t.Spec.Metrics) == 0 {
			return analysisTemplate{}, fmt.Errorf("%s: no metrics", path)
		}
		return t, nil
	}
	return analysisTemplate{}, fmt.Errorf("%s: no AnalysisTemplate", path)
}

// examples are the requests and queries of the deploy examples, with the
// demo's service and pod-template hashes as arguments.
type examples struct {
	// judgeBody is canary-stage-judge.yaml's jsonBody: the request Argo
	// Rollouts' Web provider posts to /api/v1/analysis (with Flagger, the
	// Canary's rollout webhook request).
	judgeBody []byte
	// gateQuery is canary-stage-gate.yaml's query: the canary pods' error
	// ratio since the stage started (with Flagger, the MetricTemplate's,
	// as a ratio).
	gateQuery string
	// gateThreshold is its max-error-ratio argument.
	gateThreshold string
	// canary and baseline select each side's pods in the demo's figures.
	canary, baseline string
}

func loadExamples(controller string) (examples, error) {
	if controller == ControllerFlagger {
		return loadFlaggerExamples()
	}
	args := map[string]string{"service": service, "stable-hash": stableHash, "canary-hash": canaryHash}
	judge, err := loadTemplate(judgeTemplatePath, args)
	if err != nil {
		return examples{}, err
	}
	w := judge.Spec.Metrics[0].Provider.Web
	if w == nil || w.JSONBody == nil {
		return examples{}, fmt.Errorf("%s: the first metric has no web provider with a jsonBody", judgeTemplatePath)
	}
	body, err := json.Marshal(w.JSONBody)
	if err != nil {
		return examples{}, fmt.Errorf("%s: encode jsonBody: %w", judgeTemplatePath, err)
	}
	gate, err := loadTemplate(gateTemplatePath, args)
	if err != nil {
		return examples{}, err
	}
	p := gate.Spec.Metrics[0].Provider.Prometheus
	if p == nil {
		return examples{}, fmt.Errorf("%s: the first metric has no prometheus provider", gateTemplatePath)
	}
	threshold := ""
	for _, a := range gate.Spec.Args {
		if a.Name == "max-error-ratio" && a.Value != nil {
			threshold = *a.Value
		}
	}
	return examples{judgeBody: body, gateQuery: strings.TrimSpace(p.Query), gateThreshold: threshold,
		canary: fmt.Sprintf("rollouts_pod_template_hash=%q", canaryHash), baseline: fmt.Sprintf("rollouts_pod_template_hash=%q", stableHash)}, nil
}

// loadFlaggerExamples reads deploy/flagger's MetricTemplate and Canary: the
// gate is the MetricTemplate's query (percent, made a ratio), the judge the
// Canary's rollout webhook request (${name} and ${namespace} replaced as
// Flagger replaces them) over the stage's canary-step window instead of
// its lookback, which counts back from the server's clock while the demo's
// stages are in simulated time.
func loadFlaggerExamples() (examples, error) {
	b, err := fs.ReadFile(deploy.Examples, flaggerPath)
	if err != nil {
		return examples{}, fmt.Errorf("read %s: %w", flaggerPath, err)
	}
	var ex examples
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var obj struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Query    string `yaml:"query"`
				Analysis struct {
					Webhooks []struct {
						Type     string            `yaml:"type"`
						Metadata map[string]string `yaml:"metadata"`
					} `yaml:"webhooks"`
				} `yaml:"analysis"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return examples{}, fmt.Errorf("parse %s: %w", flaggerPath, err)
		}
		switch obj.Kind {
		case "MetricTemplate":
			q := strings.NewReplacer("{{ namespace }}", namespace, "{{ target }}", service).Replace(obj.Spec.Query)
			ex.gateQuery = "(" + strings.TrimSpace(q) + ") / 100"
		case "Canary":
			for _, h := range obj.Spec.Analysis.Webhooks {
				if h.Type != "rollout" || h.Metadata["request"] == "" {
					continue
				}
				var req map[string]any
				r := strings.NewReplacer("${name}", service, "${namespace}", namespace).Replace(h.Metadata["request"])
				if err := json.Unmarshal([]byte(r), &req); err != nil {
					return examples{}, fmt.Errorf("%s: the rollout webhook's request: %w", flaggerPath, err)
				}
				delete(req, "lookback")
				req["window"] = map[string]any{"event": "canary-step", "match": []string{fmt.Sprintf("service=%q", service)}}
				if ex.judgeBody, err = json.Marshal(req); err != nil {
					return examples{}, fmt.Errorf("%s: encode the webhook's request: %w", flaggerPath, err)
				}
				ex.canary, _ = req["canary"].(string)
				ex.baseline, _ = req["baseline"].(string)
			}
		}
	}
	if ex.gateQuery == "" || ex.judgeBody == nil || ex.canary == "" || ex.baseline == "" {
		return examples{}, fmt.Errorf("%s: want a MetricTemplate with a query and a Canary with a rollout webhook whose request has a canary and a baseline", flaggerPath)
	}
	ex.gateThreshold = "0.01"
	return ex, nil
}

// stageQueries are the demo's per-stage figures, in the shape of the
// dashboard's canary-stage panels: since the start of the latest canary
// step of the service, for one side's pods.
// One side's pods are picked by side, matchers such as
// rollouts_pod_template_hash="…".
func p99SinceStage(side string) string {
	return fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate_since(http_request_duration_seconds_bucket{service=%q, %s}[1h], change_event_active{event_name="canary-step", service=%q})))`,
		service, side, service)
}

func errorRatioSinceStage(side string) string {
	return fmt.Sprintf(`sum(increase_since(http_requests_total{service=%[1]q, %[2]s, code=~"5.."}[1h], change_event_active{event_name="canary-step", service=%[1]q}))
/
sum(increase_since(http_requests_total{service=%[1]q, %[2]s}[1h], change_event_active{event_name="canary-step", service=%[1]q}))`, service, side)
}
