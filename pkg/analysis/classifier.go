package analysis

import (
	"math"
	"slices"
)

// This file ports kayenta-judge classifiers/metric/MannWhitneyClassifier.scala.

// Labels Kayenta gives the two sides in reasons (NetflixACAJudge.classifyMetric).
const (
	experimentLabel = "Canary"
	controlLabel    = "Baseline"
)

// series is the judge's Metric case class.
type series struct {
	name   string
	values []float64
	label  string
}

// mannWhitneyClassifier is MannWhitneyClassifier with its constructor
// arguments. The judge uses tolerance 0.25 and confLevel 0.98.
type mannWhitneyClassifier struct {
	tolerance         float64
	confLevel         float64
	allowedDecrease   float64 // effectSizeThresholds._1
	allowedIncrease   float64 // effectSizeThresholds._2
	criticalDecrease  float64 // criticalThresholds._1
	criticalIncrease  float64 // criticalThresholds._2
	effectSizeMeasure EffectSizeMeasure
	rng               *javaRandom // noise for the constant-series rule

	// Options.ScaleFree, DecideConstants and WideCLES.
	scaleFree       bool
	decideConstants bool
	wideCLES        bool
}

// metricClassification is MetricClassification plus what Kayenta computes
// and drops.
type metricClassification struct {
	classification string
	reason         string // "" is Kayenta's None
	deviation      float64
	critical       bool
	details        *ClassifierDetails
}

// ClassifierDetails is what the Mann-Whitney classifier computed for a
// metric. Kayenta computes all of it and reports none of it.
type ClassifierDetails struct {
	// ShortCut names the rule that decided without a test: "nodata",
	// "identical" (same sorted values) or "single-value" (one distinct value
	// on both sides); empty when the test ran.
	ShortCut string `json:"shortCut,omitempty"`
	// NoiseAdded is set when both series were constant (but different) and
	// Gaussian noise of 1e-5 times the value was added before the test.
	NoiseAdded bool `json:"noiseAdded,omitempty"`
	// LowerConfidence and UpperConfidence bound the shift experiment -
	// control at the confidence level; Estimate is the Hodges-Lehmann
	// estimate of the shift.
	LowerConfidence Float `json:"lowerConfidence"`
	UpperConfidence Float `json:"upperConfidence"`
	Estimate        Float `json:"estimate"`
	ConfidenceLevel Float `json:"confidenceLevel"`
	// LowerBound and UpperBound are ∓ tolerance × |Estimate|: the interval
	// must lie entirely beyond one of them for High or Low.
	LowerBound Float `json:"lowerBound"`
	UpperBound Float `json:"upperBound"`
	// EffectSize is measured by EffectSizeMeasure; NaN means it could not
	// be computed and was ignored.
	EffectSize        Float             `json:"effectSize"`
	EffectSizeMeasure EffectSizeMeasure `json:"effectSizeMeasure"`
}

// classify is MannWhitneyClassifier.classify. An error is Kayenta's
// RuntimeException, which the judge reports as an Error classification.
func (c *mannWhitneyClassifier) classify(control, experiment series, direction Direction, nanStrategy NaNStrategy,
	isCriticalMetric, isDataRequired bool) (metricClassification, error) {
	// No data for the experiment or the control.
	if len(experiment.values) == 0 || len(control.values) == 0 {
		details := &ClassifierDetails{ShortCut: "nodata"}
		if nanStrategy == NaNRemove {
			reason := "Missing data for " + experiment.name
			if isDataRequired && !isCriticalMetric {
				return metricClassification{ClassificationNodataFailMetric, reason, 1.0, false, details}, nil
			}
			return metricClassification{ClassificationNodata, reason, 1.0, isCriticalMetric, details}, nil
		}
		return metricClassification{ClassificationPass, "", 1.0, false, details}, nil
	}

	// Identical data.
	if sameSorted(experiment.values, control.values) {
		reason := "The " + experiment.label + " and " + control.label + " data are identical"
		return metricClassification{ClassificationPass, reason, 1.0, false, &ClassifierDetails{ShortCut: "identical"}}, nil
	}

	// One distinct value across both sides.
	if distinctCount(experiment.values, control.values) == 1 {
		return metricClassification{ClassificationPass, "", 1.0, false, &ClassifierDetails{ShortCut: "single-value"}}, nil
	}

	comparison, err := c.compare(control, experiment, direction)
	if err != nil {
		return metricClassification{}, err
	}

	effectSize := float64(comparison.details.EffectSize)
	criticalHighFailure := isCriticalMetric && comparison.classification == ClassificationHigh &&
		(math.IsNaN(effectSize) || effectSize >= c.criticalIncrease)
	criticalLowFailure := isCriticalMetric && comparison.classification == ClassificationLow &&
		(math.IsNaN(effectSize) || effectSize <= c.criticalDecrease)

	switch {
	case criticalHighFailure:
		reason := "The metric " + experiment.name + " was classified as High (Critical)"
		return metricClassification{ClassificationHigh, reason, comparison.deviation, true, comparison.details}, nil
	case criticalLowFailure:
		reason := "The metric " + experiment.name + " was classified as Low (Critical)"
		return metricClassification{ClassificationLow, reason, comparison.deviation, true, comparison.details}, nil
	case isCriticalMetric && (comparison.classification == ClassificationNodata || comparison.classification == ClassificationError):
		comparison.critical = true
		return comparison, nil
	}
	comparison.critical = false
	return comparison, nil
}

// compare is MannWhitneyClassifier.compare: the test, the tolerance bounds,
// then direction and effect size.
func (c *mannWhitneyClassifier) compare(control, experiment series, direction Direction) (metricClassification, error) {
	experimentValues, controlValues := experiment.values, control.values

	// The degenerate case: both series constant. Kayenta adds Gaussian
	// noise scaled to the value, experiment first.
	constants := distinctCount(experimentValues) == 1 && distinctCount(controlValues) == 1
	addNoise := constants && !c.decideConstants
	if addNoise {
		experimentValues = c.addGaussianNoise(experimentValues)
		controlValues = c.addGaussianNoise(controlValues)
	}

	var mw mannWhitneyResult
	var err error
	switch {
	case constants && c.decideConstants:
		// Every pairwise difference is the same: it is the interval and
		// the estimate.
		d := experimentValues[0] - controlValues[0]
		mw = mannWhitneyResult{lower: d, upper: d, estimate: d}
	case c.scaleFree:
		mw, err = scaleFreeUTest(experimentValues, controlValues, c.confLevel)
	default:
		mw, err = mannWhitneyUTest(experimentValues, controlValues, c.confLevel)
	}
	if err != nil {
		return metricClassification{}, err
	}
	deviation := meanRatio(controlValues, experimentValues)
	var effectSize float64
	switch {
	case c.effectSizeMeasure == CLES && c.wideCLES:
		effectSize = clesWide(controlValues, experimentValues)
	case c.effectSizeMeasure == CLES:
		effectSize = cles(controlValues, experimentValues)
	default:
		effectSize = meanRatio(controlValues, experimentValues)
	}

	// Bounds: a fraction of the Hodges-Lehmann estimate.
	criticalValue := c.tolerance * math.Abs(mw.estimate)
	lowerBound := -1 * criticalValue
	upperBound := criticalValue

	details := &ClassifierDetails{
		NoiseAdded:        addNoise,
		LowerConfidence:   Float(mw.lower),
		UpperConfidence:   Float(mw.upper),
		Estimate:          Float(mw.estimate),
		ConfidenceLevel:   Float(c.confLevel),
		LowerBound:        Float(lowerBound),
		UpperBound:        Float(upperBound),
		EffectSize:        Float(effectSize),
		EffectSizeMeasure: c.effectSizeMeasure,
	}

	// If the effect size cannot be computed, it is ignored.
	isHigh := (direction == DirectionIncrease || direction == DirectionEither) &&
		mw.lower > upperBound &&
		(math.IsNaN(effectSize) || effectSize >= c.allowedIncrease)
	isLow := (direction == DirectionDecrease || direction == DirectionEither) &&
		mw.upper < lowerBound &&
		(math.IsNaN(effectSize) || effectSize <= c.allowedDecrease)

	switch {
	case isHigh:
		return metricClassification{ClassificationHigh, experiment.name + " was classified as High", deviation, false, details}, nil
	case isLow:
		return metricClassification{ClassificationLow, experiment.name + " was classified as Low", deviation, false, details}, nil
	}
	return metricClassification{ClassificationPass, "", deviation, false, details}, nil
}

// scaleFreeUTest is mannWhitneyUTest on x and y divided by their largest
// finite magnitude, with the interval and estimate scaled back, so that the
// root finder's absolute tolerance is relative to the data.
func scaleFreeUTest(x, y []float64, confidenceLevel float64) (mannWhitneyResult, error) {
	scale := 0.0
	for _, s := range [][]float64{x, y} {
		for _, v := range s {
			if a := math.Abs(v); a > scale && !math.IsInf(a, 0) {
				scale = a
			}
		}
	}
	if scale == 0 || math.IsNaN(scale) {
		return mannWhitneyUTest(x, y, confidenceLevel)
	}
	div := func(s []float64) []float64 {
		out := make([]float64, len(s))
		for i, v := range s {
			out[i] = v / scale
		}
		return out
	}
	r, err := mannWhitneyUTest(div(x), div(y), confidenceLevel)
	if err != nil {
		return r, err
	}
	return mannWhitneyResult{lower: r.lower * scale, upper: r.upper * scale, estimate: r.estimate * scale}, nil
}

// addGaussianNoise is MannWhitneyClassifier.addGaussianNoise: values plus
// N(0, (first value × 1e-5)²) noise.
func (c *mannWhitneyClassifier) addGaussianNoise(values []float64) []float64 {
	const scalingFactor = 1e-5
	stdev := values[0] * scalingFactor
	out := make([]float64, len(values))
	for i, v := range values {
		out[i] = v + (float64(c.rng.gaussian()*stdev) + 0.0)
	}
	return out
}

// sameSorted is experiment.sorted.sameElements(control.sorted): same length
// and pairwise == after sorting by Double.compare.
func sameSorted(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	as, bs := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(as, javaCompare)
	slices.SortFunc(bs, javaCompare)
	for i := range as {
		if as[i] != bs[i] {
			return false
		}
	}
	return true
}

// distinctCount is Scala's distinct.length over the concatenation of the
// slices, with Scala's == on doubles (-0.0 == 0.0; NaN distinct from all).
func distinctCount(slices ...[]float64) int {
	seen := make(map[float64]struct{})
	nans := 0
	for _, s := range slices {
		for _, v := range s {
			if math.IsNaN(v) {
				nans++
				continue
			}
			seen[v] = struct{}{} // Go map keys compare with ==, so -0 and +0 are one key.
		}
	}
	return len(seen) + nans
}
