package analysis

import (
	"math"
	"slices"
)

// This file ports the descriptive statistics Kayenta takes from Apache
// Commons Math 3.6.1 (stat/descriptive/moment/Mean.java, Variance.java,
// rank/Min.java, rank/Max.java, rank/Percentile.java) and
// kayenta-judge stats/DescriptiveStatistics.scala.

// mean is Commons Math's Mean.evaluate: the definitional mean plus a
// second-pass correction term. It is NaN for no values.
func mean(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	n := float64(len(values))
	var sum float64
	for _, v := range values {
		sum += v
	}
	xbar := sum / n
	var correction float64
	for _, v := range values {
		correction += v - xbar
	}
	return xbar + correction/n
}

// variance is Commons Math's bias-corrected Variance.evaluate: 0 for one
// value, NaN for none.
func variance(values []float64) float64 {
	switch len(values) {
	case 0:
		return math.NaN()
	case 1:
		return 0
	}
	m := mean(values)
	var accum, accum2 float64
	for _, v := range values {
		dev := v - m
		accum += float64(dev * dev)
		accum2 += dev
	}
	n := float64(len(values))
	return (accum - float64(accum2*accum2)/n) / (n - 1.0)
}

// minimum is Commons Math's Min.evaluate: NaN values after the first are
// skipped.
func minimum(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	m := values[0]
	for _, v := range values {
		if !math.IsNaN(v) {
			if !(m < v) {
				m = v
			}
		}
	}
	return m
}

// maximum is Commons Math's Max.evaluate.
func maximum(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	m := values[0]
	for _, v := range values {
		if !math.IsNaN(v) {
			if !(m > v) {
				m = v
			}
		}
	}
	return m
}

// percentile is Commons Math's Percentile with EstimationType.R_7 and the
// default NaNStrategy.REMOVED, p in (0, 100]. Kayenta's
// DescriptiveStatistics.percentile.
func percentile(values []float64, p float64) float64 {
	if !(p > 0 && p <= 100) {
		return math.NaN() // Commons Math throws OutOfRangeException; no caller passes such p.
	}
	switch len(values) {
	case 0:
		return math.NaN()
	case 1:
		return values[0]
	}
	work := make([]float64, 0, len(values))
	for _, v := range values {
		if !math.IsNaN(v) {
			work = append(work, v)
		}
	}
	if len(work) == 0 {
		return math.NaN()
	}
	slices.Sort(work) // KthSelector selects the k-th smallest: the same element values.
	length := len(work)
	q := p / 100
	var pos float64
	switch q {
	case 0:
		pos = 0
	case 1:
		pos = float64(length)
	default:
		pos = 1 + float64(float64(length-1)*q)
	}
	fpos := math.Floor(pos)
	intPos := int(fpos)
	dif := pos - fpos
	if pos < 1 {
		return work[0]
	}
	if pos >= float64(length) {
		return work[length-1]
	}
	lower := work[intPos-1]
	upper := work[intPos]
	return lower + float64(dif*(upper-lower))
}

// MetricStatistics are the descriptive statistics Kayenta reports for the
// control and the experiment after NaN and outlier handling
// (DescriptiveStatistics.summary): all zero for no values.
type MetricStatistics struct {
	Min   Float `json:"min"`
	Max   Float `json:"max"`
	Mean  Float `json:"mean"`
	Std   Float `json:"std"`
	Count int   `json:"count"`
}

func summary(values []float64) MetricStatistics {
	if len(values) == 0 {
		return MetricStatistics{}
	}
	return MetricStatistics{
		Min:   Float(minimum(values)),
		Max:   Float(maximum(values)),
		Mean:  Float(mean(values)),
		Std:   Float(math.Sqrt(variance(values))),
		Count: len(values),
	}
}
