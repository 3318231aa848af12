package analysis

import (
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

// judgeOne judges one metric pair with the given settings and options.
func judgeOne(t *testing.T, control, experiment []float64, canary map[string]any, opts Options) CanaryAnalysisResult {
	t.Helper()
	cfg := CanaryConfig{
		Metrics:    []CanaryMetricConfig{{Name: "m", Groups: []string{"g"}, AnalysisConfigurations: map[string]any{"canary": canary}}},
		Classifier: &CanaryClassifierConfig{GroupWeights: map[string]float64{}},
	}
	pair := MetricSetPair{Name: "m", Values: map[string]Series{Control: control, Experiment: experiment}}
	r, err := Judge(cfg, CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}, []MetricSetPair{pair}, opts)
	require.NoError(t, err)
	return r.Results[0]
}

func scaled(values []float64, f float64) []float64 {
	out := make([]float64, len(values))
	for i, v := range values {
		out[i] = v * f
	}
	return out
}

// TestScaleFree: a 3 % shift with 1 % noise is High at any scale with
// ScaleFree; Kayenta's absolute root tolerance of 1e-4 loses it when the
// metric is around 1e-4 (an error ratio, a latency in hours).
func TestScaleFree(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	control, experiment := make([]float64, 120), make([]float64, 120)
	for i := range control {
		control[i] = 1 + 0.01*r.NormFloat64()
		experiment[i] = 1.03 + 0.01*r.NormFloat64()
	}
	native := NativeOptions()
	for _, f := range []float64{1, 0x1p-13, 0x1p20} {
		got := judgeOne(t, scaled(control, f), scaled(experiment, f), nil, native)
		require.Equal(t, ClassificationHigh, got.Classification, "scale %v", f)
		// Scaling by a power of two is exact, so the interval scales exactly.
		base := judgeOne(t, control, experiment, nil, native)
		require.Equal(t, float64(base.Details.LowerConfidence)*f, float64(got.Details.LowerConfidence), "scale %v", f)
		require.Equal(t, float64(base.Details.Estimate)*f, float64(got.Details.Estimate), "scale %v", f)
	}
	require.Equal(t, ClassificationHigh, judgeOne(t, control, experiment, nil, Options{}).Classification)
	small := judgeOne(t, scaled(control, 0x1p-13), scaled(experiment, 0x1p-13), nil, Options{})
	require.Equal(t, ClassificationPass, small.Classification, "Kayenta's tolerance hides the shift at 1e-4")
}

// TestDecideConstants: two different constants near 0 leave Kayenta's
// noise at 0, every value tied, and the metric in Error (which a critical
// metric ignores); natively the difference decides, and a critical Error
// fails the canary.
func TestDecideConstants(t *testing.T) {
	control := []float64{1e-320, 1e-320, 1e-320, 1e-320}
	experiment := []float64{3e-320, 3e-320, 3e-320, 3e-320}
	critical := map[string]any{"critical": true}

	kayenta := judgeOne(t, control, experiment, critical, Options{})
	require.Equal(t, ClassificationError, kayenta.Classification)
	require.False(t, kayenta.Critical)

	native := judgeOne(t, control, experiment, critical, NativeOptions())
	require.Equal(t, ClassificationHigh, native.Classification)
	require.True(t, native.Critical)
	require.False(t, native.Details.NoiseAdded)
	require.Equal(t, Float(3e-320-1e-320), native.Details.Estimate)

	// A constant canary equal within the tolerance band cannot exist: any
	// difference of two constants lies outside ±25 % of itself.
	down := judgeOne(t, []float64{5, 5, 5}, []float64{4, 4, 4}, map[string]any{"direction": "increase"}, NativeOptions())
	require.Equal(t, ClassificationPass, down.Classification, "a decrease of an increase-only metric passes")
}

// TestCriticalErrors: when the test cannot be computed, a critical metric
// fails the canary with CriticalErrors and is ignored by Kayenta. (With
// DecideConstants, the case below is decided instead.)
func TestCriticalErrors(t *testing.T) {
	cfg := CanaryConfig{
		Metrics: []CanaryMetricConfig{
			{Name: "a", Groups: []string{"g"}, AnalysisConfigurations: map[string]any{"canary": map[string]any{"critical": true}}},
			{Name: "b", Groups: []string{"g"}},
		},
		Classifier: &CanaryClassifierConfig{GroupWeights: map[string]float64{}},
	}
	tied := map[string]Series{Control: {2e-320, 2e-320}, Experiment: {1e-320, 1e-320}} // the noise underflows: Error
	ok := map[string]Series{Control: {1, 2, 3}, Experiment: {1, 2, 3}}
	pairs := []MetricSetPair{{Name: "a", Values: tied}, {Name: "b", Values: ok}}
	th := CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}

	k, err := Judge(cfg, th, pairs, Options{})
	require.NoError(t, err)
	require.Equal(t, ClassificationError, k.Results[0].Classification)
	require.Equal(t, Float(100), k.Score.Score)

	n, err := Judge(cfg, th, pairs, Options{CriticalErrors: true})
	require.NoError(t, err)
	require.Equal(t, ClassificationError, n.Results[0].Classification)
	require.True(t, n.Results[0].Critical)
	require.Equal(t, Float(0), n.Score.Score)
	require.Equal(t, ScoreFail, n.Score.Classification)
	require.Equal(t, "Canary Failed: Metric Classification Failed", n.Score.ClassificationReason)
}

// TestExcludeNoDataGroups: a group whose only metric has no data counts as
// 100 in Kayenta; natively its weight goes to the groups with data.
func TestExcludeNoDataGroups(t *testing.T) {
	cfg := CanaryConfig{
		Metrics: []CanaryMetricConfig{
			{Name: "errors", Groups: []string{"errors"}},
			{Name: "latency", Groups: []string{"latency"}},
			{Name: "cpu", Groups: []string{"cpu"}},
		},
		Classifier: &CanaryClassifierConfig{GroupWeights: map[string]float64{"errors": 50, "latency": 30, "cpu": 20}},
	}
	high := map[string]Series{Control: {1, 1.1, 0.9, 1, 1.05, 0.95, 1}, Experiment: {5, 5.5, 4.5, 5, 5.2, 4.8, 5}}
	pass := map[string]Series{Control: {1, 2, 3}, Experiment: {1, 2, 3}}
	none := map[string]Series{Control: {}, Experiment: {}}
	pairs := []MetricSetPair{{Name: "errors", Values: pass}, {Name: "latency", Values: high}, {Name: "cpu", Values: none}}
	th := CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}

	k, err := Judge(cfg, th, pairs, Options{})
	require.NoError(t, err)
	require.Equal(t, ClassificationNodata, k.Results[2].Classification)
	require.Equal(t, Float(70), k.Score.Score) // 50 + 0 + 20 for the group without data

	n, err := Judge(cfg, th, pairs, NativeOptions())
	require.NoError(t, err)
	require.Equal(t, Float(62.5), n.Score.Score) // 50 / (50 + 30)
}

// TestWideCLES: beyond 46,341 experiment points Kayenta's m(m+1) overflows
// 32 bits; the 64-bit CLES of a sample against itself stays 0.5.
func TestWideCLES(t *testing.T) {
	values := make([]float64, 50000)
	for i := range values {
		values[i] = float64(i)
	}
	require.NotEqual(t, 0.5, cles(values, values))
	require.Equal(t, 0.5, clesWide(values, values))
}

func TestOptionsValidate(t *testing.T) {
	cfg := CanaryConfig{Classifier: &CanaryClassifierConfig{}}
	th := CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}
	_, err := Judge(cfg, th, nil, Options{ConfidenceLevel: 1})
	require.ErrorContains(t, err, "confidence level must be in (0, 1), got 1")
	_, err = Judge(cfg, th, nil, Options{Tolerance: -1})
	require.ErrorContains(t, err, "tolerance must be a finite number >= 0, got -1")
	_, err = Judge(cfg, th, nil, Options{Tolerance: 0.1, ConfidenceLevel: 0.9})
	require.NoError(t, err)
}
