package analysis

import "math"

// This file ports kayenta-judge stats/EffectSizes.scala.

// meanRatio is EffectSizes.meanRatio: mean(experiment) / mean(control), NaN
// when either mean is zero.
func meanRatio(control, experiment []float64) float64 {
	controlMean := mean(control)
	experimentMean := mean(experiment)
	if controlMean == 0 || experimentMean == 0 {
		return math.NaN()
	}
	return experimentMean / controlMean
}

// cles is EffectSizes.cles, the common language effect size of Vargha and
// Delaney (2000): the probability that a random experiment value exceeds a
// random control value, ties counting one half. Kayenta computes m(m+1) and
// 2nm in 32-bit Int arithmetic; that is kept, so like Kayenta it overflows
// beyond about 46,000 experiment or 32,000 x 32,000 points.
func cles(control, experiment []float64) float64 { return clesIn[int32](control, experiment) }

// clesWide is cles in 64-bit arithmetic (Options.WideCLES).
func clesWide(control, experiment []float64) float64 { return clesIn[int64](control, experiment) }

// clesIn computes cles with the point counts in T, whose width decides
// where m(m+1) and 2nm overflow.
func clesIn[T int32 | int64](control, experiment []float64) float64 {
	m := T(len(experiment))
	n := T(len(control))
	data := make([]float64, 0, len(experiment)+len(control))
	data = append(data, experiment...)
	data = append(data, control...)
	ranks := rankAverage(data)
	var r1 float64
	for _, r := range ranks[:m] {
		r1 += r
	}
	return (2*r1 - float64(m*(m+1))) / float64(2*n*m)
}

// cohenD is EffectSizes.cohenD, Cohen's d with the pooled standard
// deviation. The judge does not use it; it is ported with Kayenta's
// StatisticSuite.
func cohenD(control, experiment []float64) float64 {
	c, e := summary(control), summary(experiment)
	ec, cc := float64(e.Count), float64(c.Count)
	es, cs := float64(e.Std), float64(c.Std)
	pooled := math.Sqrt((float64((ec-1)*math.Pow(es, 2)) + float64((cc-1)*math.Pow(cs, 2))) / (cc + ec - 2))
	return math.Abs(float64(e.Mean)-float64(c.Mean)) / pooled
}
