package analysis

import (
	"bufio"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKayentaReference compares this package, bit for bit, with Kayenta's
// own code. testdata/kayentaref/output.txt is what Kayenta's
// MannWhitney, MannWhitneyClassifier, Transforms, IQRDetector and
// DescriptiveStatistics (compiled from spinnaker/kayenta at kayentaCommit by
// testdata/kayentaref/run.sh, Scala 2.11, Commons Math 3.6.1, OpenJDK 17)
// print for the cases in input.txt: the golden cases plus 640 random metrics
// with random judge settings, and 400 random sets of classifications for
// WeightedSumScorer and ThresholdScoreClassifier, whose CanaryAnalysisResult
// input is a stand-in with the same getters (testdata/kayentaref/cases.py).
func TestKayentaReference(t *testing.T) {
	inputs := readTSV(t, "testdata/kayentaref/input.txt")
	outputs := readTSV(t, "testdata/kayentaref/output.txt")
	require.Len(t, outputs, len(inputs))
	require.Greater(t, len(inputs), 600)

	for i, in := range inputs {
		out := outputs[i]
		name := in[0]
		require.Equal(t, name, out[0])
		t.Run(name, func(t *testing.T) {
			if in[1] == "score" {
				checkReferenceScore(t, in, out)
				return
			}
			conf, tolerance := parseF(t, in[2]), parseF(t, in[3])
			control, experiment := parseList(t, in[16]), parseList(t, in[17])
			switch in[1] {
			case "mw":
				got, err := mannWhitneyUTest(experiment, control, conf)
				require.NoError(t, err)
				requireBits(t, out[1], got.lower, "lower")
				requireBits(t, out[2], got.upper, "upper")
				requireBits(t, out[3], got.estimate, "estimate")
			case "metric":
				checkReferenceMetric(t, name, in, out, conf, tolerance, control, experiment)
			default:
				t.Fatalf("kind %q", in[1])
			}
		})
	}
}

func checkReferenceMetric(t *testing.T, name string, in, out []string, conf, tolerance float64, control, experiment []float64) {
	a := DefaultMetricAnalysis()
	switch in[4] {
	case "increase":
		a.Direction = DirectionIncrease
	case "decrease":
		a.Direction = DirectionDecrease
	}
	if in[5] == "replace" {
		a.NaNStrategy = NaNReplace
	}
	if in[6] == "remove" {
		a.OutlierStrategy = OutliersRemove
	}
	a.OutlierFactor = parseF(t, in[7])
	a.Critical, a.MustHaveData = in[8] == "true", in[9] == "true"
	if in[10] == "cles" {
		a.EffectSize = CLES
	}
	a.AllowedIncrease, a.AllowedDecrease = parseF(t, in[11]), parseF(t, in[12])
	a.CriticalIncrease, a.CriticalDecrease = parseF(t, in[13]), parseF(t, in[14])
	seed, err := strconv.ParseInt(in[15], 10, 64)
	require.NoError(t, err)

	e, err := transform(experiment, a)
	require.NoError(t, err)
	c, err := transform(control, a)
	require.NoError(t, err)
	requireStatsBits(t, out[9], summary(e), "experiment stats")
	requireStatsBits(t, out[10], summary(c), "control stats")

	classifier := &mannWhitneyClassifier{
		tolerance: tolerance, confLevel: conf,
		allowedDecrease: a.AllowedDecrease, allowedIncrease: a.AllowedIncrease,
		criticalDecrease: a.CriticalDecrease, criticalIncrease: a.CriticalIncrease,
		effectSizeMeasure: a.EffectSize, rng: newJavaRandom(seed),
	}
	got, err := classifier.classify(series{name, c, controlLabel}, series{name, e, experimentLabel},
		a.Direction, a.NaNStrategy, a.Critical, a.MustHaveData)
	if err != nil {
		require.Equal(t, ClassificationError, out[1], "Go failed with %v", err)
		return
	}
	reason := got.reason
	if reason == "" {
		reason = "-"
	}
	require.Equal(t, out[1], got.classification)
	require.Equal(t, out[2], reason)
	require.Equal(t, out[3], strconv.FormatBool(got.critical))
	requireBits(t, out[4], got.deviation, "deviation")
	if out[5] != "-" {
		require.NotNil(t, got.details)
		require.False(t, got.details.NoiseAdded)
		requireBits(t, out[5], float64(got.details.LowerConfidence), "lower")
		requireBits(t, out[6], float64(got.details.UpperConfidence), "upper")
		requireBits(t, out[7], float64(got.details.Estimate), "estimate")
		requireBits(t, out[8], float64(got.details.EffectSize), "effect size")
	}
}

func checkReferenceScore(t *testing.T, in, out []string) {
	pass, marginal := parseF(t, in[2]), parseF(t, in[3])
	weights := map[string]float64{}
	for _, w := range strings.Split(in[4], ";") {
		if g, v, ok := strings.Cut(w, "="); ok {
			weights[g] = parseF(t, v)
		}
	}
	var results []CanaryAnalysisResult
	for _, r := range strings.Split(in[5], ";") {
		if r == "" {
			continue
		}
		f := strings.Split(r, "|")
		require.Len(t, f, 4)
		reason := f[3]
		if reason == "-" {
			reason = ""
		}
		results = append(results, CanaryAnalysisResult{Classification: f[0], Groups: strings.Split(f[1], "+"),
			Critical: f[2] == "true", ClassificationReason: reason})
	}
	got := weightedSumScore(weights, results)
	requireBits(t, out[1], got.summaryScore, "summary score")
	require.Equal(t, out[2], classifyScore(got.summaryScore, pass, marginal))
	reason := got.reason
	if reason == "" {
		reason = "-"
	}
	require.Equal(t, out[3], reason)
	groups := make([]string, 0, len(got.groupScores))
	for _, g := range got.groupScores {
		groups = append(groups, g.name)
	}
	slices.Sort(groups)
	wantGroups := []string{}
	if out[4] != "-" {
		wantGroups = strings.Split(out[4], ",")
	}
	require.Len(t, groups, len(wantGroups))
	for i, w := range wantGroups {
		name, bits, _ := strings.Cut(w, "=")
		require.Equal(t, name, groups[i])
		for _, g := range got.groupScores {
			if g.name == name {
				requireBits(t, bits, g.score, "group "+name)
			}
		}
	}
}

func readTSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	require.NoError(t, sc.Err())
	return rows
}

// parseF parses Java's Double.toString, Double.toHexString and Python's repr.
func parseF(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err, s)
	return v
}

func parseList(t *testing.T, s string) []float64 {
	if s == "-" {
		return []float64{}
	}
	parts := strings.Split(s, ",")
	out := make([]float64, len(parts))
	for i, p := range parts {
		out[i] = parseF(t, p)
	}
	return out
}

func requireBits(t *testing.T, want string, got float64, what string) {
	t.Helper()
	w := parseF(t, want)
	if math.IsNaN(w) {
		require.True(t, math.IsNaN(got), "%s: Kayenta NaN, Go %v", what, got)
		return
	}
	require.Equal(t, math.Float64bits(w), math.Float64bits(got), "%s: Kayenta %s (%v), Go %x (%v)", what, want, w, got, got)
}

func requireStatsBits(t *testing.T, want string, got MetricStatistics, what string) {
	t.Helper()
	f := strings.Split(want, ",")
	require.Len(t, f, 5)
	requireBits(t, f[0], float64(got.Min), what+" min")
	requireBits(t, f[1], float64(got.Max), what+" max")
	requireBits(t, f[2], float64(got.Mean), what+" mean")
	requireBits(t, f[3], float64(got.Std), what+" std")
	require.Equal(t, f[4], strconv.Itoa(got.Count), what+" count")
}
