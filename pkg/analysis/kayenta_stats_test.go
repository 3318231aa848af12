package analysis

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// Ported from kayenta-judge/src/test/scala/com/netflix/kayenta/judge/StatisticSuite.scala
// at kayentaCommit; each case names the upstream line and test.

func TestKayentaStatisticSuiteSummary(t *testing.T) {
	// 26 "Summary Statistics: Scalar": MetricStatistics(4, 4, 4, 0, 1).
	require.Equal(t, MetricStatistics{Min: 4, Max: 4, Mean: 4, Std: 0, Count: 1}, summary([]float64{4.0}))

	// 33 "Summary Statistics: List".
	s := summary([]float64{1.0, 1.0, 1.0, 10.0, 10.0, 10.0})
	require.Equal(t, Float(1.0), s.Min)
	require.Equal(t, Float(10.0), s.Max)
	require.Equal(t, Float(5.5), s.Mean)
	require.InDelta(t, 4.9295, float64(s.Std), 1e-4)
	require.Equal(t, 6, s.Count)

	// 44 "Summary Statistics: No Data": MetricStatistics(0, 0, 0, 0, 0).
	require.Equal(t, MetricStatistics{}, summary(nil))
}

func TestKayentaStatisticSuitePercentile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  []float64
		p     float64
		want  float64
		delta float64 // 0: upstream asserts ===
	}{
		{"51 Summary Statistics: Basic Percentile", stat51TestData, 5, 0.175, 1e-4},
		{"51 Summary Statistics: Basic Percentile", stat51TestData, 50, 1.75, 0},
		{"51 Summary Statistics: Basic Percentile", stat51TestData, 100, 3.5, 0},
		{"58 Summary Statistics: Basic Percentile Estimate (Linear Interpolation)", stat58TestData, 50, 4.5, 0},
		{"63 Summary Statistics: Percentile (NIST Data)", stat63TestData, 90, 95.19568, 0},
		{"71 Summary Statistics: Percentile Metric Object", []float64{1.0}, 100, 1.0, 0},
		{"76 Summary Statistics: Percentile Estimate (Linear Interpolation)", stat76TestData, 25, 0.0, 0},
		{"76 Summary Statistics: Percentile Estimate (Linear Interpolation)", stat76TestData, 75, 0.0416, 1e-4},
	} {
		got := percentile(tc.data, tc.p)
		if tc.delta == 0 {
			// Scalatest's === on doubles is ==.
			require.Equal(t, tc.want, got, "%s p=%v", tc.name, tc.p)
		} else {
			require.InDelta(t, tc.want, got, tc.delta, "%s p=%v", tc.name, tc.p)
		}
	}
}

func TestKayentaStatisticSuiteEffectSizes(t *testing.T) {
	// 95 "Effect Size: Mean Ratio (No Effect)", 106 "(Summary Stats)", 120 "(High)", 131 "(Low)".
	require.Equal(t, 1.0, meanRatio(cls653ControlData, cls653ControlData))
	require.Equal(t, 10.0, meanRatio(cls653ControlData, cls732ExperimentData))
	require.Equal(t, 0.1, meanRatio(stat131ControlData, cls732ExperimentData))
	// 142 "Effect Size: Mean Ratio (Zero Mean)".
	require.True(t, math.IsNaN(meanRatio(cls745ControlData, cls732ExperimentData)))

	// 153 "Effect Size: Cohen's D" (upstream passes experiment as control; d is symmetric).
	require.InDelta(t, 3.03821, cohenD(stat153ExperimentData, stat153ControlData), 1e-5)

	// 164 "CLES Effect Size: Identical", 175 "Different (No Overlap)", 192 "High Metric", 217 "Low Metric".
	require.Equal(t, 0.5, cles(cls640ExperimentData, cls640ExperimentData))
	require.Equal(t, 0.0, cles(stat175ControlData, stat175ExperimentData))
	require.InDelta(t, 0.771, cles(stat192ControlData, stat192ExperimentData), 0.001)
	require.Equal(t, 0.12, cles(stat217ControlData, stat217ExperimentData))
}

// Ported from kayenta-judge/src/test/scala/com/netflix/kayenta/judge/DetectorSuite.scala
// and TransformSuite.scala at kayentaCommit.

func TestKayentaDetectorSuite(t *testing.T) {
	flags := func(n int, idx ...int) []bool {
		out := make([]bool, n)
		for _, i := range idx {
			out[i] = true
		}
		return out
	}
	// 25 "KSigma Detection", 34 "KSigma Two Sided".
	require.Equal(t, flags(11, 5), kSigmaOutliers(det25TestData, 3.0))
	require.Equal(t, flags(8, 3, 7), kSigmaOutliers(det34TestData, 1.0))

	for _, tc := range []struct {
		name string
		data []float64
		want []bool
	}{
		{"44 IQR Detection", det44TestData, flags(8, 4)},
		{"53 IQR Detect Two Sided", det34TestData, flags(8, 3, 7)},
		{"62 IQR Empty Data", []float64{}, []bool{}},
		{"71 IQR NIST Test", det71TestData, flags(len(det71TestData), len(det71TestData)-1)},
	} {
		got, err := iqrOutliers(tc.data, 1.5, false)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, tc.name)
	}

	// IQRDetector's require(factor > 0.0).
	_, err := iqrOutliers(det44TestData, 0, true)
	require.ErrorContains(t, err, "greater than zero")
}

func TestKayentaTransformSuite(t *testing.T) {
	// 30 "Remove Single NaN", 38 "Remove Multiple NaN", 46 "Replace NANs".
	require.Equal(t, []float64{0.0, 1.0, 1.0, 0.0}, removeNaNs(tr30TestData))
	require.Equal(t, []float64{}, removeNaNs(tr38TestData))
	require.Equal(t, []float64{0.0, 10.10, 20.20, 30.30, 0.0, 40.40}, replaceNaNs(tr46TestData, 0.0))

	// 54 "IQR Outlier Removal".
	outliers, err := iqrOutliers(det44TestData, 1.5, false)
	require.NoError(t, err)
	require.Equal(t, []float64{21.0, 23.0, 24.0, 25.0, 29.0, 23.0, 21.0}, removeOutliers(det44TestData, outliers))

	// 63 "KSigma Outlier Removal".
	require.Equal(t, []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, removeOutliers(det25TestData, kSigmaOutliers(det25TestData, 3.0)))

	// 72 "Add Gaussian Noise": RandomUtils.init(12345), then
	// addGaussianNoise(zeros(5), mean = 1.0, stdev = 1.0).
	rng := newJavaRandom(12345)
	transformed := make([]float64, len(cls745ControlData))
	for i, v := range cls745ControlData {
		transformed[i] = v + (float64(rng.gaussian()*1.0) + 1.0)
	}
	require.InDelta(t, 1.0, mean(transformed), 0.2)
	require.InDelta(t, 1.0, math.Sqrt(variance(transformed)), 0.2)
	require.Len(t, transformed, 5)
}

// Ported from kayenta-judge/src/test/scala/com/netflix/kayenta/judge/UtilsSuite.scala
// at kayentaCommit.

func TestKayentaUtilsSuiteRandom(t *testing.T) {
	normal := func(rng *javaRandom, m, sd float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(rng.gaussian()*sd) + m
		}
		return out
	}
	// 28 "RandomUtils List of Random Samples (Zero Mean)".
	s := normal(newJavaRandom(123456789), 0, 1, 500)
	require.InDelta(t, 0.0, mean(s), 0.2)
	require.InDelta(t, 1.0, variance(s), 0.2)
	require.Len(t, s, 500)
	// 41 "RandomUtils List of Random Samples (Non-zero Mean)".
	s = normal(newJavaRandom(123456789), 10, 3, 1000)
	require.InDelta(t, 10.0, mean(s), 0.2)
	require.InDelta(t, 3.0, math.Sqrt(variance(s)), 0.2)
	require.Len(t, s, 1000)
	// 54 "RandomUtils Random Sample (Zero Variance)".
	require.Equal(t, 0.0, normal(newJavaRandom(1), 0, 0, 1)[0])
}

func TestKayentaUtilsSuiteMapUtils(t *testing.T) {
	// 59 "MapUtils Get Path" and 87 "MapUtils Get of Java Map", with JSON's types.
	m := map[string]any{
		"foo": map[string]any{"bar": 42.0, "baz": "abc"},
		"list": []any{
			map[string]any{"a": "1"},
			map[string]any{"b": "2"},
			map[string]any{"a": "3"},
		},
	}
	for _, tc := range []struct {
		path  []string
		want  any
		found bool
	}{
		{nil, m, true},
		{[]string{"not_found"}, nil, false},
		{[]string{"foo", "not_found"}, nil, false},
		{[]string{"foo", "bar"}, 42.0, true},
		{[]string{"foo", "baz"}, "abc", true},
		{[]string{"foo", "bar", "baz"}, nil, false},
		{[]string{"list", "a"}, []any{"1", "3"}, true},
		{[]string{"list", "b"}, []any{"2"}, true},
		{[]string{"list", "c"}, nil, false},
	} {
		got, found := mapGet(m, tc.path...)
		require.Equal(t, tc.found, found, "%v", tc.path)
		require.Equal(t, tc.want, got, "%v", tc.path)
	}
	got, found := mapGet(42.0)
	require.True(t, found)
	require.Equal(t, 42.0, got)
	// 83 "MapUtils Get of Null".
	_, found = mapGet(nil, "this", "and", "that")
	require.False(t, found)
	// 113 "MapUtils get of a double works when it's an Integer".
	f, err := mapFloat(map[string]any{"bar": 42}, 1.0, "bar")
	require.NoError(t, err)
	require.Equal(t, 42.0, f)
}

// TestJavaRandomMatchesJDK checks the noise generator against
// java.util.Random.nextGaussian on OpenJDK 17 (testdata/javaref/Ref.java).
// Only the last bit may differ, where StrictMath.log and math.Log disagree.
func TestJavaRandomMatchesJDK(t *testing.T) {
	for _, tc := range []struct {
		seed int64
		want []float64
	}{
		{12345, []float64{-0x1.80a1ffe3d6b0bp-3, 0x1.2d4785fc80083p-1, 0x1.e5c9bd7c8e902p-1, -0x1.fa24b9a887588p-2, -0x1.39318653b97f7p0, -0x1.655b243032927p-1}},
		{123456789, []float64{0x1.01793be273503p1, -0x1.0e45f2fae63bap-1, -0x1.ee6ee72699c3cp-3, 0x1.bc0bf2c6d2543p-1, 0x1.4cfb56ae17d76p0, -0x1.76dac57172a79p-1}},
		{DefaultNoiseSeed, []float64{-0x1.9d584f69d47bbp-3, -0x1.0654574704af3p0, -0x1.b27d3df6b5b5p-1, 0x1.a7c62644b1d52p-4, 0x1.ad1b3c9f64ad1p-2, -0x1.5d1a778dba2cfp-3}},
	} {
		rng := newJavaRandom(tc.seed)
		for i, want := range tc.want {
			got := rng.gaussian()
			d := int64(math.Float64bits(want)) - int64(math.Float64bits(got))
			require.LessOrEqual(t, max(d, -d), int64(1), "seed %d draw %d: got %x want %x", tc.seed, i, got, want)
		}
	}
}
