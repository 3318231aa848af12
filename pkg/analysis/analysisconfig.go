package analysis

import (
	"fmt"
	"math"
	"strings"
)

// Direction is the direction of change that fails a metric.
type Direction string

// Directions ("canary.direction"); anything else is Either.
const (
	DirectionIncrease Direction = "increase"
	DirectionDecrease Direction = "decrease"
	DirectionEither   Direction = "either"
)

// NaNStrategy says what to do with missing (NaN) samples.
type NaNStrategy string

// NaN strategies ("canary.nanStrategy"); anything else, including Kayenta's
// default "none", is Remove.
const (
	NaNRemove  NaNStrategy = "remove"
	NaNReplace NaNStrategy = "replace" // with 0
)

// OutlierStrategy says whether outliers are removed before classification.
type OutlierStrategy string

// Outlier strategies ("canary.outliers.strategy"); anything else is Keep.
const (
	OutliersRemove OutlierStrategy = "remove"
	OutliersKeep   OutlierStrategy = "keep"
)

// EffectSizeMeasure is how the size of a difference is measured.
type EffectSizeMeasure string

// Effect size measures ("canary.effectSize.measure"); anything else is
// MeanRatio.
const (
	// MeanRatio is mean(experiment) / mean(control); NaN (ignored) when a
	// mean is zero. Neutral value 1.
	MeanRatio EffectSizeMeasure = "meanRatio"
	// CLES is the common language effect size: the probability that an
	// experiment sample exceeds a control sample. Neutral value 0.5.
	CLES EffectSizeMeasure = "cles"
)

// MetricAnalysis is the typed form of a metric's
// analysisConfigurations["canary"], with Kayenta's defaults applied
// (NetflixACAJudge.classifyMetric).
type MetricAnalysis struct {
	Direction       Direction
	NaNStrategy     NaNStrategy
	OutlierStrategy OutlierStrategy
	OutlierFactor   float64 // IQR multiplier, default 3; must be > 0 when outliers are removed
	Critical        bool    // a High/Low/Nodata verdict fails the whole canary
	MustHaveData    bool    // no data fails the metric (NodataFailMetric) instead of Nodata
	Muted           bool    // reported but not scored

	EffectSize EffectSizeMeasure
	// A High (Low) verdict also needs the effect size to be at least
	// AllowedIncrease (at most AllowedDecrease); a critical metric fails the
	// canary only beyond CriticalIncrease / CriticalDecrease. All default to
	// the measure's neutral value (1 for MeanRatio, 0.5 for CLES), i.e. no
	// extra condition.
	AllowedIncrease  float64
	AllowedDecrease  float64
	CriticalIncrease float64
	CriticalDecrease float64
}

// DefaultMetricAnalysis is what an empty analysisConfigurations means.
func DefaultMetricAnalysis() MetricAnalysis {
	return MetricAnalysis{
		Direction:        DirectionEither,
		NaNStrategy:      NaNRemove,
		OutlierStrategy:  OutliersKeep,
		OutlierFactor:    3.0,
		EffectSize:       MeanRatio,
		AllowedIncrease:  1,
		AllowedDecrease:  1,
		CriticalIncrease: 1,
		CriticalDecrease: 1,
	}
}

// Validate reports settings the judge cannot use. Kayenta checks only the
// outlier factor (IQRDetector's require), and only when outliers are
// removed.
func (a MetricAnalysis) Validate() error {
	if a.OutlierStrategy == OutliersRemove && !(a.OutlierFactor > 0) {
		return fmt.Errorf("canary.outliers.outlierFactor must be greater than zero, got %v", a.OutlierFactor)
	}
	return nil
}

// ParseMetricAnalysis reads analysisConfigurations the way Kayenta's
// NetflixACAJudge does, through judge utils/MapUtils.scala: a missing key
// takes its default, an unknown enumeration value silently takes the
// default, a value of the wrong type is an error (Kayenta: a
// ClassCastException that fails the whole judgement), and a JSON null is
// false / 0 for flags and numbers (Scala's unboxing of null) and an error for
// strings (Kayenta: NullPointerException). Kayenta also rejects integers
// beyond 32 bits; they are accepted here.
func ParseMetricAnalysis(analysisConfigurations map[string]any) (MetricAnalysis, error) {
	a := DefaultMetricAnalysis()
	var err error
	str := func(def string, path ...string) string {
		if err != nil {
			return def
		}
		var s string
		s, err = mapString(analysisConfigurations, def, path...)
		return s
	}
	boolean := func(path ...string) bool {
		if err != nil {
			return false
		}
		var b bool
		b, err = mapBool(analysisConfigurations, false, path...)
		return b
	}
	number := func(def float64, path ...string) float64 {
		if err != nil {
			return def
		}
		var f float64
		f, err = mapFloat(analysisConfigurations, def, path...)
		return f
	}

	switch str("either", "canary", "direction") {
	case "increase":
		a.Direction = DirectionIncrease
	case "decrease":
		a.Direction = DirectionDecrease
	default:
		a.Direction = DirectionEither
	}
	if str("none", "canary", "nanStrategy") == "replace" {
		a.NaNStrategy = NaNReplace
	}
	if str("none", "canary", "outliers", "strategy") == "remove" {
		a.OutlierStrategy = OutliersRemove
	}
	a.OutlierFactor = number(3.0, "canary", "outliers", "outlierFactor")
	a.Critical = boolean("canary", "critical")
	a.MustHaveData = boolean("canary", "mustHaveData")
	a.Muted = boolean("canary", "muted")

	measure := str("meanRatio", "canary", "effectSize", "measure")
	defaultEffect := 1.0
	if measure == "cles" {
		a.EffectSize = CLES
		defaultEffect = 0.5
	}
	a.AllowedIncrease = number(defaultEffect, "canary", "effectSize", "allowedIncrease")
	a.AllowedDecrease = number(defaultEffect, "canary", "effectSize", "allowedDecrease")
	a.CriticalIncrease = number(defaultEffect, "canary", "effectSize", "criticalIncrease")
	a.CriticalDecrease = number(defaultEffect, "canary", "effectSize", "criticalDecrease")
	if err != nil {
		return MetricAnalysis{}, err
	}
	return a, nil
}

// mapGet is MapUtils.get: it walks maps by key and, at a list, collects the
// walk of every element (found if any element has the path).
func mapGet(data any, path ...string) (any, bool) {
	if len(path) == 0 {
		return data, true
	}
	switch d := data.(type) {
	case map[string]any:
		v, ok := d[path[0]]
		if !ok {
			return nil, false
		}
		return mapGet(v, path[1:]...)
	case []any:
		var out []any
		for _, e := range d {
			if v, ok := mapGet(e, path...); ok {
				out = append(out, v)
			}
		}
		if len(out) == 0 {
			return nil, false
		}
		return out, true
	}
	return nil, false
}

func mapString(data any, def string, path ...string) (string, error) {
	v, ok := mapGet(data, path...)
	if !ok {
		return def, nil
	}
	switch s := v.(type) {
	case nil:
		return "", fmt.Errorf("analysisConfigurations.%s: want a string, got null", strings.Join(path, "."))
	case string:
		return s, nil
	}
	// Kayenta compares v.toString with the known names; no other JSON type
	// can match one.
	return fmt.Sprint(v), nil
}

func mapBool(data any, def bool, path ...string) (bool, error) {
	v, ok := mapGet(data, path...)
	if !ok {
		return def, nil
	}
	switch b := v.(type) {
	case nil:
		return false, nil
	case bool:
		return b, nil
	}
	return false, fmt.Errorf("analysisConfigurations.%s: want true or false, got %s", strings.Join(path, "."), jsonType(v))
}

func mapFloat(data any, def float64, path ...string) (float64, error) {
	v, ok := mapGet(data, path...)
	if !ok {
		return def, nil
	}
	var f float64
	switch n := v.(type) {
	case nil:
		return 0, nil
	case float64:
		f = n
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case interface{ Float64() (float64, error) }: // json.Number
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, fmt.Errorf("analysisConfigurations.%s: %w", strings.Join(path, "."), err)
		}
	default:
		return 0, fmt.Errorf("analysisConfigurations.%s: want a number, got %s", strings.Join(path, "."), jsonType(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("analysisConfigurations.%s: want a finite number, got %v", strings.Join(path, "."), f)
	}
	return f, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
