package analysis

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The golden cases in testdata/golden.json are computed by
// testdata/golden.py with NumPy and SciPy, independently of this package and
// of Kayenta's code; the script's docstring says what each section checks.

type goldenMannWhitney struct {
	Name            string    `json:"name"`
	Checks          string    `json:"checks"`
	Experiment      []float64 `json:"experiment"`
	Control         []float64 `json:"control"`
	ConfidenceLevel float64   `json:"confidenceLevel"`
	Lower           float64   `json:"lower"`
	Upper           float64   `json:"upper"`
	EstimateLow     float64   `json:"estimateLow"`
	EstimateHigh    float64   `json:"estimateHigh"`
	HodgesLehmann   float64   `json:"hodgesLehmann"`
}

type goldenStats struct {
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
	Count int     `json:"count"`
}

type goldenResult struct {
	Name            string             `json:"name"`
	Classification  string             `json:"classification"`
	Reason          *string            `json:"reason"`
	Critical        bool               `json:"critical"`
	Muted           bool               `json:"muted"`
	Groups          []string           `json:"groups"`
	Ratio           Float              `json:"ratio"`
	ExperimentStats goldenStats        `json:"experimentStats"`
	ControlStats    goldenStats        `json:"controlStats"`
	Noise           bool               `json:"noise"`
	MannWhitney     *goldenMannWhitney `json:"mannWhitney"`
}

type goldenGroupScore struct {
	Name  string  `json:"name"`
	Score float64 `json:"score"`
}

type goldenScore struct {
	Score                float64 `json:"score"`
	Classification       string  `json:"classification"`
	ClassificationReason string  `json:"classificationReason"`
}

type goldenFile struct {
	RootTolerance float64             `json:"rootTolerance"`
	MannWhitney   []goldenMannWhitney `json:"mannWhitney"`
	Judge         []struct {
		Name        string                           `json:"name"`
		Checks      string                           `json:"checks"`
		Config      CanaryConfig                     `json:"config"`
		Thresholds  CanaryClassifierThresholdsConfig `json:"thresholds"`
		Pairs       []MetricSetPair                  `json:"pairs"`
		Results     []goldenResult                   `json:"results"`
		GroupScores []goldenGroupScore               `json:"groupScores"`
		Score       goldenScore                      `json:"score"`
	} `json:"judge"`
	Scores []struct {
		Name    string `json:"name"`
		Checks  string `json:"checks"`
		Results []struct {
			Classification string   `json:"classification"`
			Groups         []string `json:"groups"`
			Critical       bool     `json:"critical"`
			Muted          bool     `json:"muted"`
			Reason         *string  `json:"reason"`
		} `json:"results"`
		Weights     map[string]float64               `json:"weights"`
		Thresholds  CanaryClassifierThresholdsConfig `json:"thresholds"`
		GroupScores []goldenGroupScore               `json:"groupScores"`
		Score       goldenScore                      `json:"score"`
	} `json:"scores"`
}

func readGolden(t *testing.T) goldenFile {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	require.NoError(t, err)
	var g goldenFile
	require.NoError(t, json.Unmarshal(b, &g))
	require.NotEmpty(t, g.MannWhitney)
	require.NotEmpty(t, g.Judge)
	require.NotEmpty(t, g.Scores)
	return g
}

// rootSlack is how far Kayenta's root finder may land from an exact
// interval end: |b - root| <= 2 * (2 eps |b| + tolerance / 2).
func rootSlack(g goldenFile, v float64) float64 {
	return g.RootTolerance + 8*brentEpsilon*math.Abs(v)
}

func checkMannWhitney(t *testing.T, g goldenFile, want goldenMannWhitney, lower, upper, estimate float64) {
	t.Helper()
	require.InDelta(t, want.Lower, lower, rootSlack(g, want.Lower), "lower confidence bound")
	require.InDelta(t, want.Upper, upper, rootSlack(g, want.Upper), "upper confidence bound")
	require.GreaterOrEqual(t, estimate, want.EstimateLow-rootSlack(g, want.EstimateLow), "estimate")
	require.LessOrEqual(t, estimate, want.EstimateHigh+rootSlack(g, want.EstimateHigh), "estimate")
}

func TestGoldenMannWhitney(t *testing.T) {
	g := readGolden(t)
	for _, tc := range g.MannWhitney {
		t.Run(tc.Name, func(t *testing.T) {
			t.Log(tc.Checks)
			got, err := mannWhitneyUTest(tc.Experiment, tc.Control, tc.ConfidenceLevel)
			require.NoError(t, err)
			checkMannWhitney(t, g, tc, got.lower, got.upper, got.estimate)
		})
	}
}

func requireClose(t *testing.T, want, got float64, rel float64, msg string) {
	t.Helper()
	if math.IsNaN(want) {
		require.True(t, math.IsNaN(got), "%s: got %v, want NaN", msg, got)
		return
	}
	require.InDelta(t, want, got, rel*max(1, math.Abs(want)), msg)
}

func requireStats(t *testing.T, want goldenStats, got MetricStatistics, msg string) {
	t.Helper()
	require.Equal(t, want.Count, got.Count, msg+" count")
	requireClose(t, want.Min, float64(got.Min), 0, msg+" min")
	requireClose(t, want.Max, float64(got.Max), 0, msg+" max")
	requireClose(t, want.Mean, float64(got.Mean), 1e-12, msg+" mean")
	requireClose(t, want.Std, float64(got.Std), 1e-12, msg+" std")
}

func TestGoldenJudge(t *testing.T) {
	g := readGolden(t)
	for _, tc := range g.Judge {
		t.Run(tc.Name, func(t *testing.T) {
			t.Log(tc.Checks)
			got, err := Judge(tc.Config, tc.Thresholds, tc.Pairs, Options{})
			require.NoError(t, err)
			require.Equal(t, JudgeName, got.JudgeName)
			require.Len(t, got.Results, len(tc.Results))
			for i, want := range tc.Results {
				r := got.Results[i]
				require.Equal(t, want.Name, r.Name)
				require.Equal(t, want.Classification, r.Classification, want.Name)
				wantReason := ""
				if want.Reason != nil {
					wantReason = *want.Reason
				}
				require.Equal(t, wantReason, r.ClassificationReason, want.Name)
				require.Equal(t, want.Critical, r.Critical, want.Name)
				require.Equal(t, want.Muted, r.Muted, want.Name)
				require.Equal(t, want.Groups, r.Groups, want.Name)
				require.NotNil(t, r.ResultMetadata, want.Name)
				ratioTolerance := 1e-12
				if want.Noise {
					ratioTolerance = 1e-4 // both sides carry their own noise draws
				}
				requireClose(t, float64(want.Ratio), float64(r.ResultMetadata.Ratio), ratioTolerance, want.Name+" ratio")
				requireStats(t, want.ExperimentStats, r.ExperimentMetadata.Stats, want.Name+" experiment")
				requireStats(t, want.ControlStats, r.ControlMetadata.Stats, want.Name+" control")
				if want.MannWhitney != nil && !want.Noise {
					require.NotNil(t, r.Details, want.Name)
					checkMannWhitney(t, g, *want.MannWhitney, float64(r.Details.LowerConfidence),
						float64(r.Details.UpperConfidence), float64(r.Details.Estimate))
				}
			}
			require.Len(t, got.GroupScores, len(tc.GroupScores))
			for i, want := range tc.GroupScores {
				require.Equal(t, want.Name, got.GroupScores[i].Name)
				requireClose(t, want.Score, float64(got.GroupScores[i].Score), 1e-15, want.Name)
				require.Empty(t, got.GroupScores[i].Classification)
			}
			require.Equal(t, tc.Score.Score, float64(got.Score.Score))
			require.Equal(t, tc.Score.Classification, got.Score.Classification)
			require.Equal(t, tc.Score.ClassificationReason, got.Score.ClassificationReason)
		})
	}
}

func TestGoldenScores(t *testing.T) {
	g := readGolden(t)
	for _, tc := range g.Scores {
		t.Run(tc.Name, func(t *testing.T) {
			t.Log(tc.Checks)
			results := make([]CanaryAnalysisResult, len(tc.Results))
			for i, r := range tc.Results {
				results[i] = CanaryAnalysisResult{Classification: r.Classification, Groups: r.Groups, Critical: r.Critical, Muted: r.Muted}
				if r.Reason != nil {
					results[i].ClassificationReason = *r.Reason
				}
			}
			cfg := CanaryConfig{Classifier: &CanaryClassifierConfig{GroupWeights: tc.Weights}}
			got := score(cfg, tc.Thresholds, results, Options{})
			require.Len(t, got.GroupScores, len(tc.GroupScores))
			for i, want := range tc.GroupScores {
				require.Equal(t, want.Name, got.GroupScores[i].Name)
				requireClose(t, want.Score, float64(got.GroupScores[i].Score), 1e-15, want.Name)
			}
			require.Equal(t, tc.Score.Score, float64(got.Score.Score))
			require.Equal(t, tc.Score.Classification, got.Score.Classification)
			require.Equal(t, tc.Score.ClassificationReason, got.Score.ClassificationReason)
		})
	}
}
