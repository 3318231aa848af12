package kayenta

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/levitated/levitated/pkg/analysis"
)

// configNamePattern is CanaryConfigController's name pattern, commas
// included (Kayenta's character class lists them).
var configNamePattern = regexp.MustCompile(`^[A-Z,a-z,0-9,\-,_]*$`)

// validateStored checks a config before it is stored, as
// CanaryConfigController does (a name, an application, unique metric
// names), and what Kayenta would only fail on when the config runs:
// unsupported query types, unreadable analysis settings, bad weights.
func validateStored(cfg *analysis.CanaryConfig) error {
	switch {
	case cfg.Name == "":
		return badRequest("name", "Canary config must specify a name.")
	case len(cfg.Applications) == 0:
		return badRequest("applications", "Canary config must specify at least one application.")
	case !configNamePattern.MatchString(cfg.Name):
		return badRequest("name", "Canary config cannot be named '%s'. Names must contain only letters, numbers, dashes (-) and underscores (_).", cfg.Name)
	}
	seen := map[string]bool{}
	for i, m := range cfg.Metrics {
		switch {
		case m.Name == "":
			return badRequest(fmt.Sprintf("metrics[%d].name", i), "Metric config must specify a name.")
		case seen[m.Name]:
			return badRequest(fmt.Sprintf("metrics[%d].name", i), "Metric config name must be unique. '%s' is duplicated.", m.Name)
		}
		seen[m.Name] = true
	}
	return validateContent(cfg)
}

// validateForExecution checks what an execution needs beyond
// validateContent: metrics, each with a scope name and a name.
func validateForExecution(cfg *analysis.CanaryConfig) error {
	if len(cfg.Metrics) == 0 {
		return badRequest("metrics", "The canary config must specify at least one metric. Otherwise we're not analyzing anything. :)")
	}
	for i, m := range cfg.Metrics {
		if m.Name == "" {
			return badRequest(fmt.Sprintf("metrics[%d].name", i), "Metric config must specify a name.")
		}
		if m.ScopeName == "" {
			return badRequest(fmt.Sprintf("metrics[%d].scopeName", i), "Canary scope for metric named '%s' is null.", m.Name)
		}
	}
	return validateContent(cfg)
}

// validateContent checks the judge, the classifier and every metric's
// query and analysis settings.
func validateContent(cfg *analysis.CanaryConfig) error {
	if cfg.Judge != nil && cfg.Judge.Name != "" && cfg.Judge.Name != analysis.JudgeName {
		return badRequest("judge.name", "Unable to resolve canary judge '%s'; the judge is %s", cfg.Judge.Name, analysis.JudgeName)
	}
	for i, m := range cfg.Metrics {
		field := fmt.Sprintf("metrics[%d]", i)
		if _, err := parseQuery(m.Query, cfg.Templates); err != nil {
			return withPrefix(field, err)
		}
		a, err := analysis.ParseMetricAnalysis(m.AnalysisConfigurations)
		if err != nil {
			// "analysisConfigurations.canary.direction: want a string, got null"
			path, rule, ok := strings.Cut(err.Error(), ": ")
			if !ok || !strings.HasPrefix(path, "analysisConfigurations") {
				path, rule = "analysisConfigurations", err.Error()
			}
			return badRequest(field+"."+path, "%s", rule)
		}
		if err := a.Validate(); err != nil {
			return badRequest(field+".analysisConfigurations", "%v", err)
		}
	}
	if cfg.Classifier == nil {
		return badRequest("classifier", "is required: {\"groupWeights\": {…}}")
	}
	var sum float64
	for _, g := range sortedKeys(cfg.Classifier.GroupWeights) {
		w := cfg.Classifier.GroupWeights[g]
		if math.IsNaN(w) || w < 0 || w > 100 {
			return badRequest("classifier.groupWeights."+g, "weight %v is out of range: weights are from 0 to 100", w)
		}
		sum += w
	}
	if sum > 100 {
		return badRequest("classifier.groupWeights", "the weights total %v; they may total at most 100 (groups without a weight share what is left)", sum)
	}
	if th := cfg.Classifier.ScoreThresholds; th != nil {
		for _, f := range []struct {
			name string
			v    float64
		}{{"pass", th.Pass}, {"marginal", th.Marginal}} {
			if !(f.v >= 0 && f.v <= 100) {
				return badRequest("classifier.scoreThresholds."+f.name, "%v is out of range: scores are from 0 to 100", f.v)
			}
		}
	}
	return nil
}

// appsOverlap is CanaryConfigIndex.haveCommonElements.
func appsOverlap(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
