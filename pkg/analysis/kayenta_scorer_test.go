package analysis

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKayentaScorerSuite ports
// kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ScorerSuite.scala at
// kayentaCommit: WeightedSumScorer(groupWeights).score(results).summaryScore,
// and the group scores where upstream checks them.
func TestKayentaScorerSuite(t *testing.T) {
	type metric struct {
		classification string
		group          string
		critical       bool
	}
	for _, tc := range []struct {
		name        string
		weights     map[string]float64
		metrics     []metric
		want        float64
		groupScores []float64 // sorted, when upstream checks them
	}{
		{name: "28 Single Metric Pass", metrics: []metric{{ClassificationPass, "test-group", false}}, want: 100},
		{name: "42 Single Metric Fail", metrics: []metric{{ClassificationHigh, "test-group", false}}, want: 0},
		{name: "56 Single group Nodata", metrics: []metric{{ClassificationNodata, "test-group-nodata", false}},
			want: 0, groupScores: []float64{0}},
		{name: "75 Two Groups, one Pass, one Nodata", metrics: []metric{
			{ClassificationPass, "test-group-pass", false},
			{ClassificationPass, "test-group-pass", false},
			{ClassificationNodata, "test-group-nodata", false},
		}, want: 100, groupScores: []float64{0, 100}},
		{name: "107 One Group, Two Metrics", metrics: []metric{
			{ClassificationPass, "test-group", false},
			{ClassificationHigh, "test-group", false},
		}, want: 50},
		{name: "127 One Group, Three Metrics", metrics: []metric{
			{ClassificationPass, "test-group", false},
			{ClassificationHigh, "test-group", false},
			{ClassificationLow, "test-group", false},
		}, want: 33.33},
		{name: "153 Two Groups, Three Metrics", weights: map[string]float64{"group-1": 75, "group-2": 25}, metrics: []metric{
			{ClassificationPass, "group-1", false},
			{ClassificationPass, "group-1", false},
			{ClassificationHigh, "group-2", false},
		}, want: 75},
		{name: "179 Two Groups, Three Metrics (Equal Weight)", weights: map[string]float64{"group-1": 50, "group-2": 50}, metrics: []metric{
			{ClassificationPass, "group-1", false},
			{ClassificationHigh, "group-1", false},
			{ClassificationHigh, "group-2", false},
		}, want: 25},
		{name: "205 Two Groups, Three Metrics (Equal Weight), one NoData", weights: map[string]float64{"group-1": 50, "group-2": 50}, metrics: []metric{
			{ClassificationPass, "group-1", false},
			{ClassificationNodata, "group-1", false},
			{ClassificationHigh, "group-2", false},
		}, want: 50},
		{name: "231 Two Metrics, one good (normal), one fail (critical)", metrics: []metric{
			{ClassificationPass, "test-group", false},
			{ClassificationHigh, "test-group", true},
		}, want: 0},
		{name: "252 Two Metrics, one low (normal), one good (critical)", metrics: []metric{
			{ClassificationLow, "test-group", false},
			{ClassificationPass, "test-group", true},
		}, want: 50},
		{name: "274 Two Metrics, one good (normal), one nodata (critical)", metrics: []metric{
			{ClassificationPass, "test-group", false},
			{ClassificationNodata, "test-group", true},
		}, want: 0},
		{name: "295 Two Groups (Unequal Weight), Four Metrics", weights: map[string]float64{"group1": 15, "group2": 85}, metrics: []metric{
			{ClassificationHigh, "group1", false},
			{ClassificationLow, "group1", false},
			{ClassificationPass, "group1", false},
			{ClassificationHigh, "group2", false},
		}, want: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results := make([]CanaryAnalysisResult, len(tc.metrics))
			for i, m := range tc.metrics {
				results[i] = CanaryAnalysisResult{Classification: m.classification, Groups: []string{m.group}, Critical: m.critical}
			}
			got := weightedSumScore(tc.weights, results)
			require.Equal(t, tc.want, got.summaryScore)
			if tc.groupScores != nil {
				var scores []float64
				for _, g := range got.groupScores {
					scores = append(scores, g.score)
				}
				slices.Sort(scores)
				require.Equal(t, tc.groupScores, scores)
			}
		})
	}
}
