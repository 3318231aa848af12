package analysis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// The types in this file mirror Kayenta's JSON models (kayenta-core
// com.netflix.kayenta.canary.*, canary.results.*, metrics.MetricSetPair) with
// Kayenta's field names, so that a Kayenta canary config unmarshals into
// them and a judge result marshals as Kayenta's does.

// JudgeName is the name of the only judge this package implements, and the
// judgeName of every result.
const JudgeName = "NetflixACAJudge-v1.0"

// Float is a float64 that marshals NaN and ±Inf as Jackson does by default
// ("NaN", "Infinity", "-Infinity") and unmarshals numbers, those strings and
// null (as NaN).
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	return appendFloat(nil, float64(f)), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	v, err := parseFloat(b)
	if err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

func appendFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

func parseFloat(b []byte) (float64, error) {
	b = bytes.TrimSpace(b)
	switch string(b) {
	case "null", `"NaN"`:
		return math.NaN(), nil
	case `"Infinity"`, `"+Infinity"`:
		return math.Inf(1), nil
	case `"-Infinity"`:
		return math.Inf(-1), nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("want a number, \"NaN\", \"Infinity\" or \"-Infinity\", got %s", b)
	}
	return v, nil
}

// Series is a list of sample values as Kayenta stores it in a MetricSet or
// MetricSetPair: a missing step is NaN, written "NaN".
type Series []float64

// MarshalJSON implements json.Marshaler.
func (s Series) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("[]"), nil
	}
	b := make([]byte, 0, 2+len(s)*8)
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, v)
	}
	return append(b, ']'), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (s *Series) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("want an array of numbers: %w", err)
	}
	out := make(Series, len(raw))
	for i, r := range raw {
		v, err := parseFloat(r)
		if err != nil {
			return fmt.Errorf("value %d: %w", i, err)
		}
		out[i] = v
	}
	*s = out
	return nil
}

// CanaryConfig is Kayenta's canary configuration (canary/CanaryConfig.java).
type CanaryConfig struct {
	CreatedTimestamp    *int64                  `json:"createdTimestamp,omitzero"`
	UpdatedTimestamp    *int64                  `json:"updatedTimestamp,omitzero"`
	CreatedTimestampIso string                  `json:"createdTimestampIso,omitzero"`
	UpdatedTimestampIso string                  `json:"updatedTimestampIso,omitzero"`
	Name                string                  `json:"name,omitzero"`
	ID                  string                  `json:"id,omitzero"`
	Description         string                  `json:"description,omitzero"`
	ConfigVersion       json.RawMessage         `json:"configVersion,omitzero"` // a string in Kayenta, often written as a number
	Applications        []string                `json:"applications,omitzero"`
	Judge               *CanaryJudgeConfig      `json:"judge,omitzero"`
	Metrics             []CanaryMetricConfig    `json:"metrics"`
	Templates           map[string]string       `json:"templates,omitzero"`
	Classifier          *CanaryClassifierConfig `json:"classifier,omitzero"`
}

// CanaryJudgeConfig names the judge (canary/CanaryJudgeConfig.java).
type CanaryJudgeConfig struct {
	Name                string         `json:"name"`
	JudgeConfigurations map[string]any `json:"judgeConfigurations,omitzero"`
}

// CanaryMetricConfig is one metric of a canary config
// (canary/CanaryMetricConfig.java). Query is provider-specific ("type":
// "prometheus", "customInlineTemplate", ...) and left to the [Source].
// AnalysisConfigurations holds the judge settings under "canary"; see
// [ParseMetricAnalysis].
type CanaryMetricConfig struct {
	Name                   string          `json:"name"`
	Query                  json.RawMessage `json:"query,omitzero"`
	Groups                 []string        `json:"groups"`
	AnalysisConfigurations map[string]any  `json:"analysisConfigurations,omitzero"`
	ScopeName              string          `json:"scopeName,omitzero"`
}

// CanaryClassifierConfig holds the group weights
// (canary/CanaryClassifierConfig.java). Weights should total 100; groups
// without a weight share what is left.
type CanaryClassifierConfig struct {
	GroupWeights    map[string]float64                `json:"groupWeights"`
	ScoreThresholds *CanaryClassifierThresholdsConfig `json:"scoreThresholds,omitzero"`
}

// CanaryClassifierThresholdsConfig are the score thresholds
// (canary/CanaryClassifierThresholdsConfig.java): a score at or above Pass
// passes, at or above Marginal is marginal, below fails.
type CanaryClassifierThresholdsConfig struct {
	Pass     float64 `json:"pass"`
	Marginal float64 `json:"marginal"`
}

// UnmarshalJSON requires both thresholds: Kayenta accepts a missing one and
// then fails the whole judgement with a NullPointerException.
func (t *CanaryClassifierThresholdsConfig) UnmarshalJSON(b []byte) error {
	var raw struct {
		Pass     *float64 `json:"pass"`
		Marginal *float64 `json:"marginal"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	switch {
	case raw.Pass == nil:
		return fmt.Errorf("score thresholds: pass is required")
	case raw.Marginal == nil:
		return fmt.Errorf("score thresholds: marginal is required")
	}
	t.Pass, t.Marginal = *raw.Pass, *raw.Marginal
	return nil
}

// Keys of MetricSetPair.Values and .Scopes.
const (
	Control    = "control"
	Experiment = "experiment"
)

// MetricSetPair is one series of one metric for the control and the
// experiment (metrics/MetricSetPair.java): Values[Control] and
// Values[Experiment].
type MetricSetPair struct {
	Name       string                       `json:"name"`
	ID         string                       `json:"id"`
	Tags       map[string]string            `json:"tags"`
	Values     map[string]Series            `json:"values"`
	Scopes     map[string]MetricSetScope    `json:"scopes,omitzero"`
	Attributes map[string]map[string]string `json:"attributes,omitzero"`
}

// MetricSetScope is where a side of a MetricSetPair starts and its step.
type MetricSetScope struct {
	StartTimeIso    string `json:"startTimeIso"`
	StartTimeMillis int64  `json:"startTimeMillis"`
	StepMillis      int64  `json:"stepMillis"`
}

// CanaryJudgeResult is the judge's verdict (canary/results/CanaryJudgeResult.java).
type CanaryJudgeResult struct {
	JudgeName   string                  `json:"judgeName"`
	Results     []CanaryAnalysisResult  `json:"results"`
	GroupScores []CanaryJudgeGroupScore `json:"groupScores"`
	Score       CanaryJudgeScore        `json:"score"`
}

// CanaryAnalysisResult is the verdict on one metric set pair
// (canary/results/CanaryAnalysisResult.java). Classification is one of the
// Classification* constants.
type CanaryAnalysisResult struct {
	Name                 string            `json:"name"`
	Tags                 map[string]string `json:"tags,omitzero"`
	ID                   string            `json:"id"`
	Classification       string            `json:"classification"`
	ClassificationReason string            `json:"classificationReason,omitzero"`
	Groups               []string          `json:"groups"`
	ExperimentMetadata   StatsMetadata     `json:"experimentMetadata"`
	ControlMetadata      StatsMetadata     `json:"controlMetadata"`
	ResultMetadata       *ResultMetadata   `json:"resultMetadata,omitzero"`
	Critical             bool              `json:"critical"`
	Muted                bool              `json:"muted"`

	// Details are what the classifier computed, which Kayenta does not
	// report (spinnaker/kayenta#521). They are not part of Kayenta's JSON.
	Details *ClassifierDetails `json:"-"`
}

// StatsMetadata is the experimentMetadata / controlMetadata object.
type StatsMetadata struct {
	Stats MetricStatistics `json:"stats"`
}

// ResultMetadata is the resultMetadata object: Ratio is the experiment mean
// over the control mean, NaN when either is zero, 1 when the classifier
// short-cut.
type ResultMetadata struct {
	Ratio Float `json:"ratio"`
}

// CanaryJudgeGroupScore is the score of one metric group
// (canary/results/CanaryJudgeGroupScore.java); Kayenta always leaves the
// classification and reason empty.
type CanaryJudgeGroupScore struct {
	Name                 string `json:"name"`
	Score                Float  `json:"score"`
	Classification       string `json:"classification"`
	ClassificationReason string `json:"classificationReason"`
}

// CanaryJudgeScore is the overall score (canary/results/CanaryJudgeScore.java).
// Classification is one of the Score* constants.
type CanaryJudgeScore struct {
	Score                Float  `json:"score"`
	Classification       string `json:"classification"`
	ClassificationReason string `json:"classificationReason"`
}

// Metric classifications (judge classifiers/metric/BaseMetricClassifier.scala).
const (
	ClassificationPass             = "Pass"
	ClassificationHigh             = "High"
	ClassificationLow              = "Low"
	ClassificationNodataFailMetric = "NodataFailMetric"
	ClassificationNodata           = "Nodata"
	ClassificationError            = "Error"
)

// Score classifications (judge classifiers/score/BaseScoreClassifier.scala).
const (
	ScorePass     = "Pass"
	ScoreMarginal = "Marginal"
	ScoreFail     = "Fail"
)
