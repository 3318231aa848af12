package analysis

import (
	"fmt"
	"math"
)

// This file ports kayenta-judge detectors/IQRDetector.scala,
// detectors/KSigmaDetector.scala and preprocessing/Transforms.scala.

// iqrOutliers is IQRDetector(factor, reduceSensitivity).detect: values below
// Q1 - factor*IQR or above Q3 + factor*IQR are outliers; with
// reduceSensitivity (the judge's mode) the fences are widened to at least the
// 1st and 99th percentiles.
func iqrOutliers(data []float64, factor float64, reduceSensitivity bool) ([]bool, error) {
	if !(factor > 0) {
		return nil, fmt.Errorf("outlier factor must be greater than zero, got %v", factor)
	}
	calculateIQR := func() (float64, float64) {
		p75 := percentile(data, 75)
		p25 := percentile(data, 25)
		iqr := p75 - p25
		return p25 - float64(factor*iqr), p75 + float64(factor*iqr)
	}
	var lowerFence, upperFence float64
	if reduceSensitivity {
		lowerIQR, upperIQR := calculateIQR()
		p01 := percentile(data, 1)
		p99 := percentile(data, 99)
		lowerFence = math.Min(p01, lowerIQR)
		upperFence = math.Max(p99, upperIQR)
	} else {
		lowerFence, upperFence = calculateIQR()
	}
	out := make([]bool, len(data))
	for i, x := range data {
		out[i] = x > upperFence || x < lowerFence
	}
	return out, nil
}

// kSigmaOutliers is KSigmaDetector(k).detect: values more than k population
// standard deviations from the mean. The judge does not use it.
func kSigmaOutliers(data []float64, k float64) []bool {
	m := mean(data)
	sd := math.Sqrt(populationVariance(data))
	out := make([]bool, len(data))
	for i, x := range data {
		out[i] = math.Abs(x-m) > sd*k
	}
	return out
}

// populationVariance is Commons Math's Variance(false).evaluate.
func populationVariance(values []float64) float64 {
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
	return (accum - float64(accum2*accum2)/n) / n
}

// removeOutliers is Transforms.removeOutliers: the values whose flag is false.
func removeOutliers(data []float64, outliers []bool) []float64 {
	out := make([]float64, 0, len(data))
	for i, v := range data {
		if !outliers[i] {
			out = append(out, v)
		}
	}
	return out
}

// removeNaNs is Transforms.removeNaNs.
func removeNaNs(data []float64) []float64 {
	out := make([]float64, 0, len(data))
	for _, v := range data {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// replaceNaNs is Transforms.replaceNaNs.
func replaceNaNs(data []float64, value float64) []float64 {
	out := make([]float64, len(data))
	for i, v := range data {
		if math.IsNaN(v) {
			v = value
		}
		out[i] = v
	}
	return out
}
