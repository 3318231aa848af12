package analysis

import (
	"math"
	"slices"
)

// javaCompare is java.lang.Double.compare: -0.0 sorts before +0.0 and NaN
// after everything, equal to itself.
func javaCompare(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	ab, bb := int64(math.Float64bits(a)), int64(math.Float64bits(b))
	if math.IsNaN(a) {
		ab = 0x7ff8000000000000 // doubleToLongBits canonicalises NaN
	}
	if math.IsNaN(b) {
		bb = 0x7ff8000000000000
	}
	switch {
	case ab == bb:
		return 0
	case ab < bb:
		return -1
	}
	return 1
}

// rankAverage is Commons Math's NaturalRanking(NaNStrategy.MAXIMAL,
// TiesStrategy.AVERAGE).rank: 1-based ranks in input order, NaN recoded to
// +Inf, tied values (by Double.compare) sharing the average of their ranks.
// Commons Math fails on empty input; this returns an empty slice.
func rankAverage(data []float64) []float64 {
	type pair struct {
		value float64
		pos   int
	}
	pairs := make([]pair, len(data))
	for i, v := range data {
		if math.IsNaN(v) {
			v = math.Inf(1)
		}
		pairs[i] = pair{v, i}
	}
	slices.SortStableFunc(pairs, func(a, b pair) int { return javaCompare(a.value, b.value) })
	out := make([]float64, len(data))
	if len(pairs) == 0 {
		return out
	}
	start := 0 // first index of the current tie run in pairs
	for i := 1; i <= len(pairs); i++ {
		if i < len(pairs) && javaCompare(pairs[i].value, pairs[i-1].value) <= 0 {
			continue
		}
		// pairs[start:i] are tied; their rank is c = start+1, resolved to
		// (2c + length - 1) / 2 as in NaturalRanking.resolveTie.
		c := float64(start + 1)
		length := i - start
		rank := c
		if length > 1 {
			rank = (2*c + float64(length) - 1) / 2
		}
		for _, p := range pairs[start:i] {
			out[p.pos] = rank
		}
		start = i
	}
	return out
}
