package analysis

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// This file ports kayenta-judge scorers/WeightedSumScorer.scala,
// scorers/ScoringHelper.scala and classifiers/score/ThresholdScoreClassifier.scala.

// nodataThreshold is WeightedSumScorer.NODATA_THRESHOLD, in percent.
const nodataThreshold = 50

// groupScore is WeightedSumScorer's GroupScore.
type groupScore struct {
	name       string
	score      float64
	noData     bool
	numMetrics int
}

// scoreResult is WeightedSumScorer's ScoreResult.
type scoreResult struct {
	groupScores  []groupScore
	summaryScore float64
	reason       string // "" is None
}

// weightedSumScore is WeightedSumScorer(groupWeights).score over the
// results that are not muted.
func weightedSumScore(groupWeights map[string]float64, results []CanaryAnalysisResult) scoreResult {
	return weightedSumScoreWith(groupWeights, results, false)
}

// weightedSumScoreWith is weightedSumScore, optionally leaving groups
// without data out of the sum (Options.ExcludeNoDataGroups).
func weightedSumScoreWith(groupWeights map[string]float64, results []CanaryAnalysisResult, excludeNoData bool) scoreResult {
	groups := groupScores(results)

	for _, r := range results {
		if r.Critical && r.Classification != ClassificationPass {
			return scoreResult{groups, 0, "Canary Failed: " + reasonOrNull(r.ClassificationReason)}
		}
	}

	nodata := 0
	for _, r := range results {
		if r.Classification == ClassificationNodata {
			nodata++
		}
	}
	// Kayenta divides as doubles: 0/0 is NaN, which is not >= 50.
	if float64(nodata)/float64(len(results))*100 >= nodataThreshold {
		reason := "Canary Failed: " + strconv.Itoa(nodataThreshold) + "% or more metrics returned " + strings.ToUpper(ClassificationNodata)
		return scoreResult{groups, 0, reason}
	}
	if excludeNoData {
		return scoreResult{groups, summaryScoreWithData(groupWeights, groups), ""}
	}
	return scoreResult{groups, summaryScore(groupWeights, groups), ""}
}

// reasonOrNull renders a missing reason as Scala's string interpolation does.
func reasonOrNull(reason string) string {
	if reason == "" {
		return "null"
	}
	return reason
}

// groupScores is WeightedSumScorer.calculateGroupScores: per group, the
// percentage of Pass among Pass, High, Low and NodataFailMetric; a group
// with none of those has noData and score 0. Kayenta orders groups by hash;
// here they come in order of first appearance.
func groupScores(results []CanaryAnalysisResult) []groupScore {
	var order []string
	labels := map[string][]string{}
	for _, r := range results {
		for _, g := range r.Groups {
			if _, ok := labels[g]; !ok {
				order = append(order, g)
			}
			labels[g] = append(labels[g], r.Classification)
		}
	}
	out := make([]groupScore, 0, len(order))
	for _, name := range order {
		var numPass, numHigh, numLow, numMissingRequiredData int
		for _, l := range labels[name] {
			switch l {
			case ClassificationPass:
				numPass++
			case ClassificationHigh:
				numHigh++
			case ClassificationLow:
				numLow++
			case ClassificationNodataFailMetric:
				numMissingRequiredData++
			}
		}
		numTotal := numHigh + numLow + numPass + numMissingRequiredData
		g := groupScore{name: name, noData: numTotal == 0, numMetrics: len(labels[name])}
		if !g.noData {
			g.score = float64(numPass) / float64(numTotal) * 100
		}
		out = append(out, g)
	}
	return out
}

// summaryScore is WeightedSumScorer.calculateSummaryScore: groups without a
// configured weight share 100 minus the sum of all configured weights
// equally; a group with no data counts as 100; the sum is rounded half-up
// to 2 decimals.
func summaryScore(groupWeights map[string]float64, groups []groupScore) float64 {
	names := make([]string, 0, len(groupWeights))
	for name := range groupWeights {
		names = append(names, name)
	}
	slices.Sort(names) // Kayenta sums in hash order; weights are normally integers, so the order does not matter.
	var weightSum float64
	for _, name := range names {
		weightSum += groupWeights[name]
	}

	unweighted := map[string]struct{}{}
	for _, g := range groups {
		if _, ok := groupWeights[g.name]; !ok {
			unweighted[g.name] = struct{}{}
		}
	}
	calculatedWeight := 0.0
	if len(unweighted) > 0 {
		calculatedWeight = (100 - weightSum) / float64(len(unweighted))
	}

	var score float64
	for _, g := range groups {
		effective := g.score
		if g.noData {
			effective = 100
		}
		weight, ok := groupWeights[g.name]
		if !ok {
			weight = calculatedWeight
		}
		score += float64(effective * (weight / 100))
	}
	return roundHalfUp2(score)
}

// summaryScoreWithData is summaryScore over the groups that have data: the
// weights of those groups (configured ones as given, the others sharing
// what is left of 100 as in summaryScore) are scaled to total 100. Without
// any group with data the score is 0.
func summaryScoreWithData(groupWeights map[string]float64, groups []groupScore) float64 {
	var configured float64
	for _, name := range slices.Sorted(maps.Keys(groupWeights)) {
		configured += groupWeights[name]
	}
	unweighted := 0
	for _, g := range groups {
		if _, ok := groupWeights[g.name]; !ok {
			unweighted++
		}
	}
	shared := 0.0
	if unweighted > 0 {
		shared = (100 - configured) / float64(unweighted)
	}
	var total, score float64
	for _, g := range groups {
		if g.noData {
			continue
		}
		weight, ok := groupWeights[g.name]
		if !ok {
			weight = shared
		}
		total += weight
		score += float64(g.score * weight)
	}
	if total <= 0 {
		return 0
	}
	return roundHalfUp2(score / total)
}

// classifyScore is ThresholdScoreClassifier.classify.
func classifyScore(score, pass, marginal float64) string {
	switch {
	case score >= pass:
		return ScorePass
	case score >= marginal:
		return ScoreMarginal
	}
	return ScoreFail
}

// roundHalfUp2 is Commons Math's Precision.round(x, 2): the shortest decimal
// form of x (Java's Double.toString), rounded half away from zero to two
// decimals as a BigDecimal, then converted back; a zero keeps the sign of x.
func roundHalfUp2(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x // BigDecimal rejects "NaN" and "Infinity"; Precision.round returns NaN and x.
	}
	s := strconv.FormatFloat(math.Abs(x), 'f', -1, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	if len(frac) <= 2 {
		return x
	}
	digits := []byte(intPart + frac[:2])
	if frac[2] >= '5' {
		i := len(digits) - 1
		for ; i >= 0; i-- {
			if digits[i] == '9' {
				digits[i] = '0'
				continue
			}
			digits[i]++
			break
		}
		if i < 0 {
			digits = append([]byte{'1'}, digits...)
		}
	}
	n := len(digits)
	r, err := strconv.ParseFloat(string(digits[:n-2])+"."+string(digits[n-2:]), 64)
	if err != nil {
		return math.NaN() // unreachable: digits are decimal
	}
	if x < 0 {
		r = -r
	}
	if r == 0 {
		return 0 * x
	}
	return r
}
