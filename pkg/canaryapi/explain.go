package canaryapi

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/levitated/levitated/pkg/analysis"
)

// explain says in one paragraph why a metric got its classification: what
// was compared, the effect size, the interval, the sample counts, and the
// rule that decided.
func explain(r analysis.CanaryAnalysisResult, a analysis.MetricAnalysis, confidence float64) string {
	c, e := r.ControlMetadata.Stats, r.ExperimentMetadata.Stats
	counts := fmt.Sprintf("%d canary and %d baseline samples", e.Count, c.Count)
	var b strings.Builder
	switch r.Classification {
	case analysis.ClassificationNodata, analysis.ClassificationNodataFailMetric:
		switch {
		case e.Count == 0 && c.Count == 0:
			b.WriteString("No data: neither the canary's nor the baseline's query returned a sample.")
		case e.Count == 0:
			fmt.Fprintf(&b, "No data for the canary: its query returned no sample (the baseline has %d).", c.Count)
		default:
			fmt.Fprintf(&b, "No data for the baseline: its query returned no sample (the canary has %d).", e.Count)
		}
		switch {
		case r.Classification == analysis.ClassificationNodataFailMetric:
			b.WriteString(" must_have_data fails the metric.")
		case r.Critical:
			b.WriteString(" The metric is critical, so the canary fails.")
		default:
			b.WriteString(" The metric is left out of the score.")
		}
		return b.String()
	case analysis.ClassificationError:
		fmt.Fprintf(&b, "The Mann-Whitney test could not be computed: every sample ties (%s).", counts)
		if r.Critical {
			b.WriteString(" The metric is critical, so the canary fails.")
		}
		return b.String()
	}
	d := r.Details
	if d == nil {
		return fmt.Sprintf("%s (%s).", r.Classification, counts)
	}
	switch d.ShortCut {
	case "identical":
		return fmt.Sprintf("The canary's and the baseline's samples are identical (%s): no difference.", counts)
	case "single-value":
		return fmt.Sprintf("Canary and baseline are both the constant %s (%s): no difference.", num(float64(e.Mean)), counts)
	}

	fmt.Fprintf(&b, "Canary mean %s against baseline mean %s%s", num(float64(e.Mean)), num(float64(c.Mean)), ratioText(r))
	lower, upper, est, band := float64(d.LowerConfidence), float64(d.UpperConfidence), float64(d.Estimate), float64(d.UpperBound)
	if lower == upper && !d.NoiseAdded {
		fmt.Fprintf(&b, "; both sides are constant, so the shift canary − baseline is exactly %s, against a tolerance band of ±%s", signed(est), num(band))
	} else {
		fmt.Fprintf(&b, "; the %s%% confidence interval of the shift canary − baseline is [%s, %s] around %s, against a tolerance band of ±%s",
			strconv.FormatFloat(confidence*100, 'f', -1, 64), signed(lower), signed(upper), signed(est), num(band))
	}
	fmt.Fprintf(&b, "; %s.", counts)

	above, below := lower > band, upper < -band
	effect := float64(d.EffectSize)
	measure := "ratio"
	if d.EffectSizeMeasure == analysis.CLES {
		measure = "common-language effect size"
	}
	switch r.Classification {
	case analysis.ClassificationHigh:
		b.WriteString(" The interval lies above the band: the canary is higher")
		if a.AllowedIncrease != neutral(a) && !math.IsNaN(effect) {
			fmt.Fprintf(&b, " and its %s %s reaches the allowed increase %s", measure, num(effect), num(a.AllowedIncrease))
		}
		b.WriteString(criticalText(r, a, "increase", a.CriticalIncrease))
	case analysis.ClassificationLow:
		b.WriteString(" The interval lies below the band: the canary is lower")
		if a.AllowedDecrease != neutral(a) && !math.IsNaN(effect) {
			fmt.Fprintf(&b, " and its %s %s reaches the allowed decrease %s", measure, num(effect), num(a.AllowedDecrease))
		}
		b.WriteString(criticalText(r, a, "decrease", a.CriticalDecrease))
	default:
		switch {
		case above && a.Direction == analysis.DirectionDecrease:
			b.WriteString(" The canary is higher, but only a decrease fails this metric: Pass.")
		case below && a.Direction == analysis.DirectionIncrease:
			b.WriteString(" The canary is lower, but only an increase fails this metric: Pass.")
		case above:
			fmt.Fprintf(&b, " The canary is higher, but its %s %s is below the allowed increase %s: Pass.", measure, num(effect), num(a.AllowedIncrease))
		case below:
			fmt.Fprintf(&b, " The canary is lower, but its %s %s is above the allowed decrease %s: Pass.", measure, num(effect), num(a.AllowedDecrease))
		default:
			b.WriteString(" The interval does not clear the band: no significant difference, Pass.")
		}
	}
	return b.String()
}

func neutral(a analysis.MetricAnalysis) float64 {
	if a.EffectSize == analysis.CLES {
		return 0.5
	}
	return 1
}

func criticalText(r analysis.CanaryAnalysisResult, a analysis.MetricAnalysis, dir string, threshold float64) string {
	switch {
	case r.Critical && threshold != neutral(a):
		return fmt.Sprintf(", beyond the critical %s %s: the metric is critical, so the canary fails.", dir, num(threshold))
	case r.Critical:
		return ": the metric is critical, so the canary fails."
	case a.Critical:
		return fmt.Sprintf(", but not beyond the critical %s %s: the metric fails, the canary is scored.", dir, num(threshold))
	}
	return ": the metric fails."
}

func ratioText(r analysis.CanaryAnalysisResult) string {
	if r.ResultMetadata == nil || math.IsNaN(float64(r.ResultMetadata.Ratio)) {
		return " (ratio undefined: a mean is 0)"
	}
	return " (" + num(float64(r.ResultMetadata.Ratio)) + "×)"
}

// num formats a value with four significant digits.
func num(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func signed(v float64) string {
	if v > 0 {
		return "+" + num(v)
	}
	return num(v)
}
