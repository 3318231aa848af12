package analysis

import (
	"fmt"
	"math"
)

// This file ports kayenta-judge NetflixACAJudge.scala.

// Constants NetflixACAJudge passes to the Mann-Whitney classifier. Kayenta's
// kayenta.judge tolerance/confLevel properties are read into
// NetflixJudgeConfigurationProperties but never used.
const (
	Tolerance       = 0.25
	ConfidenceLevel = 0.98
)

// DefaultNoiseSeed seeds the noise added to constant series. Kayenta's noise
// is unseeded, so any seed reproduces Kayenta's behaviour; a fixed one makes
// verdicts reproducible.
const DefaultNoiseSeed = 0x6b617965 // "kaye"; an Int, so Kayenta's RandomUtils.init can take it

// Options adjusts Judge. The zero value is Kayenta's judge.
type Options struct {
	// NoiseSeed seeds the Gaussian noise of the constant-series rule; 0
	// means DefaultNoiseSeed.
	NoiseSeed int64

	// The fields below fix flaws of Kayenta's judge (docs/analysis.md,
	// "Known flaws"). Their zero values keep Kayenta's behaviour, which the
	// Kayenta-compatible API needs; NativeOptions sets them all.

	// Tolerance is the half-width of the band around the estimate, as a
	// fraction of |estimate|; 0 means Kayenta's 0.25.
	Tolerance float64
	// ConfidenceLevel of the Mann-Whitney interval, in (0, 1); 0 means
	// Kayenta's 0.98.
	ConfidenceLevel float64
	// ScaleFree divides both series by their largest magnitude before the
	// Mann-Whitney test and scales the interval and estimate back, so that
	// the root finder's absolute tolerance of 1e-4 is relative to the data
	// (Kayenta's interval is noise for metrics around 1e-3).
	ScaleFree bool
	// DecideConstants compares two different constant series directly
	// (the interval is the difference) instead of adding Gaussian noise,
	// which is random and vanishes for values near 0.
	DecideConstants bool
	// CriticalErrors keeps a critical metric critical when its test fails
	// (Error), so that it fails the canary; Kayenta resets it.
	CriticalErrors bool
	// WideCLES computes the CLES effect size in 64-bit arithmetic; Kayenta's
	// 32-bit products overflow beyond about 46,000 points.
	WideCLES bool
	// ExcludeNoDataGroups leaves groups whose metrics all lack data out of
	// the weighted sum and shares their weight among the others; Kayenta
	// counts such a group as a perfect 100.
	ExcludeNoDataGroups bool
}

// NativeOptions are the options of levitated's native analysis API: every
// fix on, Kayenta's tolerance and confidence level.
func NativeOptions() Options {
	return Options{
		ScaleFree:           true,
		DecideConstants:     true,
		CriticalErrors:      true,
		WideCLES:            true,
		ExcludeNoDataGroups: true,
	}
}

// validate reports options Judge cannot use.
func (o Options) validate() error {
	if o.Tolerance < 0 || math.IsNaN(o.Tolerance) || math.IsInf(o.Tolerance, 0) {
		return fmt.Errorf("tolerance must be a finite number >= 0, got %v", o.Tolerance)
	}
	if o.ConfidenceLevel < 0 || o.ConfidenceLevel >= 1 || math.IsNaN(o.ConfidenceLevel) {
		return fmt.Errorf("confidence level must be in (0, 1), got %v", o.ConfidenceLevel)
	}
	return nil
}

func (o Options) tolerance() float64 {
	if o.Tolerance == 0 {
		return Tolerance
	}
	return o.Tolerance
}

func (o Options) confidenceLevel() float64 {
	if o.ConfidenceLevel == 0 {
		return ConfidenceLevel
	}
	return o.ConfidenceLevel
}

// Judge classifies every metric set pair against its metric config and
// scores the canary, as Kayenta's NetflixACAJudge-v1.0 does. A metric whose
// classification fails (Kayenta's RuntimeException in the classifier) is
// reported with classification Error. An error is returned where Kayenta
// fails the whole judgement: a pair without a metric config or without
// control or experiment values, a bad analysis configuration, a config
// without a classifier, or non-finite thresholds.
func Judge(cfg CanaryConfig, thresholds CanaryClassifierThresholdsConfig, pairs []MetricSetPair, opts Options) (CanaryJudgeResult, error) {
	if math.IsNaN(thresholds.Pass) || math.IsInf(thresholds.Pass, 0) {
		return CanaryJudgeResult{}, fmt.Errorf("score thresholds: pass must be a finite number, got %v", thresholds.Pass)
	}
	if math.IsNaN(thresholds.Marginal) || math.IsInf(thresholds.Marginal, 0) {
		return CanaryJudgeResult{}, fmt.Errorf("score thresholds: marginal must be a finite number, got %v", thresholds.Marginal)
	}
	if cfg.Classifier == nil {
		return CanaryJudgeResult{}, fmt.Errorf("canary config: classifier is missing")
	}
	if err := opts.validate(); err != nil {
		return CanaryJudgeResult{}, err
	}
	seed := opts.NoiseSeed
	if seed == 0 {
		seed = DefaultNoiseSeed
	}
	rng := newJavaRandom(seed)

	results := make([]CanaryAnalysisResult, 0, len(pairs))
	for i, pair := range pairs {
		r, err := classifyMetric(cfg, pair, rng, opts)
		if err != nil {
			return CanaryJudgeResult{}, fmt.Errorf("metric set pair %d (%q): %w", i, pair.Name, err)
		}
		results = append(results, r)
	}
	return score(cfg, thresholds, results, opts), nil
}

// classifyMetric is NetflixACAJudge.classifyMetric.
func classifyMetric(cfg CanaryConfig, pair MetricSetPair, rng *javaRandom, opts Options) (CanaryAnalysisResult, error) {
	var metricConfig *CanaryMetricConfig
	for i := range cfg.Metrics {
		if cfg.Metrics[i].Name == pair.Name {
			metricConfig = &cfg.Metrics[i]
			break
		}
	}
	if metricConfig == nil {
		return CanaryAnalysisResult{}, fmt.Errorf("could not find metric config for %s", pair.Name)
	}
	experimentValues, ok := pair.Values[Experiment]
	if !ok {
		return CanaryAnalysisResult{}, fmt.Errorf("values.%s is missing", Experiment)
	}
	controlValues, ok := pair.Values[Control]
	if !ok {
		return CanaryAnalysisResult{}, fmt.Errorf("values.%s is missing", Control)
	}
	a, err := ParseMetricAnalysis(metricConfig.AnalysisConfigurations)
	if err != nil {
		return CanaryAnalysisResult{}, fmt.Errorf("metric config %q: %w", metricConfig.Name, err)
	}
	return classifySeries(pair, metricConfig.Groups, a,
		series{name: pair.Name, values: experimentValues, label: experimentLabel},
		series{name: pair.Name, values: controlValues, label: controlLabel},
		rng, opts)
}

// classifySeries transforms both series, computes their statistics and
// classifies them.
func classifySeries(pair MetricSetPair, groups []string, a MetricAnalysis, experiment, control series, rng *javaRandom, opts Options) (CanaryAnalysisResult, error) {
	if err := a.Validate(); err != nil {
		return CanaryAnalysisResult{}, err
	}
	var err error
	if experiment.values, err = transform(experiment.values, a); err != nil {
		return CanaryAnalysisResult{}, err
	}
	if control.values, err = transform(control.values, a); err != nil {
		return CanaryAnalysisResult{}, err
	}

	if groups == nil {
		groups = []string{} // Kayenta's config builder never leaves groups null
	}
	result := CanaryAnalysisResult{
		Name:               pair.Name,
		ID:                 pair.ID,
		Tags:               pair.Tags,
		Groups:             groups,
		Muted:              a.Muted,
		ExperimentMetadata: StatsMetadata{summary(experiment.values)},
		ControlMetadata:    StatsMetadata{summary(control.values)},
	}

	classifier := &mannWhitneyClassifier{
		tolerance:         opts.tolerance(),
		confLevel:         opts.confidenceLevel(),
		allowedDecrease:   a.AllowedDecrease,
		allowedIncrease:   a.AllowedIncrease,
		criticalDecrease:  a.CriticalDecrease,
		criticalIncrease:  a.CriticalIncrease,
		effectSizeMeasure: a.EffectSize,
		rng:               rng,
		scaleFree:         opts.ScaleFree,
		decideConstants:   opts.DecideConstants,
		wideCLES:          opts.WideCLES,
	}
	c, err := classifier.classify(control, experiment, a.Direction, a.NaNStrategy, a.Critical, a.MustHaveData)
	if err != nil {
		result.Classification = ClassificationError
		result.ClassificationReason = "Metric Classification Failed"
		result.Critical = opts.CriticalErrors && a.Critical
		return result, nil
	}
	result.Classification = c.classification
	result.ClassificationReason = c.reason
	result.Critical = c.critical
	result.ResultMetadata = &ResultMetadata{Ratio: Float(c.deviation)}
	result.Details = c.details
	return result, nil
}

// transform is NetflixACAJudge.transformMetric: NaN handling, then outlier
// removal.
func transform(values []float64, a MetricAnalysis) ([]float64, error) {
	if a.NaNStrategy == NaNRemove {
		values = removeNaNs(values)
	} else {
		values = replaceNaNs(values, 0)
	}
	if a.OutlierStrategy != OutliersRemove {
		return values, nil
	}
	outliers, err := iqrOutliers(values, a.OutlierFactor, true)
	if err != nil {
		return nil, err
	}
	return removeOutliers(values, outliers), nil
}

// score is ScoringHelper.score: muted results are left out of the score but
// kept in the results.
func score(cfg CanaryConfig, thresholds CanaryClassifierThresholdsConfig, results []CanaryAnalysisResult, opts Options) CanaryJudgeResult {
	scored := make([]CanaryAnalysisResult, 0, len(results))
	for _, r := range results {
		if !r.Muted {
			scored = append(scored, r)
		}
	}
	s := weightedSumScoreWith(cfg.Classifier.GroupWeights, scored, opts.ExcludeNoDataGroups)

	groups := make([]CanaryJudgeGroupScore, 0, len(s.groupScores))
	for _, g := range s.groupScores {
		groups = append(groups, CanaryJudgeGroupScore{Name: g.name, Score: Float(g.score)})
	}
	return CanaryJudgeResult{
		JudgeName:   JudgeName,
		Results:     results,
		GroupScores: groups,
		Score: CanaryJudgeScore{
			Score:                Float(s.summaryScore),
			Classification:       classifyScore(s.summaryScore, thresholds.Pass, thresholds.Marginal),
			ClassificationReason: s.reason,
		},
	}
}
