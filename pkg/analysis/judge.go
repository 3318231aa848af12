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
	seed := opts.NoiseSeed
	if seed == 0 {
		seed = DefaultNoiseSeed
	}
	rng := newJavaRandom(seed)

	results := make([]CanaryAnalysisResult, 0, len(pairs))
	for i, pair := range pairs {
		r, err := classifyMetric(cfg, pair, rng)
		if err != nil {
			return CanaryJudgeResult{}, fmt.Errorf("metric set pair %d (%q): %w", i, pair.Name, err)
		}
		results = append(results, r)
	}
	return score(cfg, thresholds, results), nil
}

// classifyMetric is NetflixACAJudge.classifyMetric.
func classifyMetric(cfg CanaryConfig, pair MetricSetPair, rng *javaRandom) (CanaryAnalysisResult, error) {
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
		rng)
}

// classifySeries transforms both series, computes their statistics and
// classifies them.
func classifySeries(pair MetricSetPair, groups []string, a MetricAnalysis, experiment, control series, rng *javaRandom) (CanaryAnalysisResult, error) {
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
		tolerance:         Tolerance,
		confLevel:         ConfidenceLevel,
		allowedDecrease:   a.AllowedDecrease,
		allowedIncrease:   a.AllowedIncrease,
		criticalDecrease:  a.CriticalDecrease,
		criticalIncrease:  a.CriticalIncrease,
		effectSizeMeasure: a.EffectSize,
		rng:               rng,
	}
	c, err := classifier.classify(control, experiment, a.Direction, a.NaNStrategy, a.Critical, a.MustHaveData)
	if err != nil {
		result.Classification = ClassificationError
		result.ClassificationReason = "Metric Classification Failed"
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
func score(cfg CanaryConfig, thresholds CanaryClassifierThresholdsConfig, results []CanaryAnalysisResult) CanaryJudgeResult {
	scored := make([]CanaryAnalysisResult, 0, len(results))
	for _, r := range results {
		if !r.Muted {
			scored = append(scored, r)
		}
	}
	s := weightedSumScore(cfg.Classifier.GroupWeights, scored)

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
