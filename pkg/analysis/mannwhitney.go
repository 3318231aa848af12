package analysis

import (
	"errors"
	"math"
	"slices"
)

// This file ports kayenta-mannwhitney (MannWhitney.scala, BrentSolver.java):
// the two-sample Mann-Whitney U (Wilcoxon rank-sum) confidence interval and
// location estimate with the normal approximation, tie correction and
// continuity correction, as R's wilcox.test(x, y, conf.int = TRUE,
// exact = FALSE, correct = TRUE) computes them.

// errAllTied is Kayenta's IllegalArgumentException from wilcoxonDiff; the
// judge turns it into an Error classification.
var errAllTied = errors.New("analysis: cannot compute confidence interval when all observations are tied")

// mannWhitneyResult is kayenta-mannwhitney's MannWhitneyResult.
type mannWhitneyResult struct {
	lower, upper float64 // confidence interval of the location shift x - y
	estimate     float64 // Hodges-Lehmann estimate, found as the root of wilcoxonDiff at quantile 0
}

// wilcoxonDiff is MannWhitney.wilcoxonDiff: the continuity- and
// tie-corrected standardised rank-sum statistic of x - mu against y, minus
// quantile. It decreases in mu; its roots are the interval ends.
func wilcoxonDiff(mu, quantile float64, x, y []float64) (float64, error) {
	xLen := float64(len(x))
	yLen := float64(len(y))

	data := make([]float64, 0, len(x)+len(y))
	for _, v := range x {
		data = append(data, v-mu)
	}
	data = append(data, y...)
	dr := rankAverage(data)

	ties := make(map[float64]int, len(dr))
	for _, r := range dr {
		ties[r]++
	}
	var dz float64
	for e := range x {
		dz += dr[e]
	}
	dz = dz - float64(xLen*(xLen+1))/2 - float64(xLen*yLen)/2

	correction := 0.0
	switch {
	case dz > 0:
		correction = 0.5
	case dz < 0:
		correction = -0.5
	}

	var tieSum float64
	for _, v := range ties {
		fv := float64(v)
		tieSum += math.Pow(fv, 3) - fv
	}
	sigma := math.Sqrt(float64(xLen*yLen/12) *
		((xLen + yLen + 1) - tieSum/float64((xLen+yLen)*(xLen+yLen-1))))
	if sigma == 0 {
		return 0, errAllTied
	}
	return (dz-correction)/sigma - quantile, nil
}

// sortedWilcoxon computes wilcoxonDiff from x and y sorted once: x - mu is
// still sorted (rounding is monotonic), so ranking x - mu together with y is
// a merge instead of a sort, without allocation. Ranks are halves of
// integers and tie terms integers, so their sums are exact in any order and
// the result is bit for bit wilcoxonDiff's. It applies when no value is NaN.
type sortedWilcoxon struct {
	xs, ys  []float64
	shifted []float64
}

func newSortedWilcoxon(x, y []float64) (*sortedWilcoxon, bool) {
	for _, v := range x {
		if math.IsNaN(v) {
			return nil, false
		}
	}
	for _, v := range y {
		if math.IsNaN(v) {
			return nil, false
		}
	}
	w := &sortedWilcoxon{xs: slices.Clone(x), ys: slices.Clone(y), shifted: make([]float64, len(x))}
	slices.SortFunc(w.xs, javaCompare)
	slices.SortFunc(w.ys, javaCompare)
	return w, true
}

// diff has wilcoxonDiff's signature; x and y are those given to
// newSortedWilcoxon.
func (w *sortedWilcoxon) diff(mu, quantile float64, x, y []float64) (float64, error) {
	xs := w.shifted
	for i, v := range w.xs {
		xs[i] = v - mu
		if math.IsNaN(xs[i]) || (i > 0 && javaCompare(xs[i-1], xs[i]) > 0) {
			return wilcoxonDiff(mu, quantile, x, y) // an infinite mu; never for finite data
		}
	}
	ys := w.ys
	xLen, yLen := float64(len(xs)), float64(len(ys))
	var rankSum, tieSum float64
	i, j, pos := 0, 0, 0
	for i < len(xs) || j < len(ys) {
		var v float64
		switch {
		case j == len(ys) || (i < len(xs) && javaCompare(xs[i], ys[j]) <= 0):
			v = xs[i]
		default:
			v = ys[j]
		}
		cx, cy := 0, 0
		for i < len(xs) && javaCompare(xs[i], v) == 0 {
			i++
			cx++
		}
		for j < len(ys) && javaCompare(ys[j], v) == 0 {
			j++
			cy++
		}
		t := cx + cy
		c := float64(pos + 1)
		rank := c
		if t > 1 {
			rank = (2*c + float64(t) - 1) / 2
		}
		rankSum += rank * float64(cx)
		ft := float64(t)
		tieSum += math.Pow(ft, 3) - ft
		pos += t
	}
	dz := rankSum - float64(xLen*(xLen+1))/2 - float64(xLen*yLen)/2

	correction := 0.0
	switch {
	case dz > 0:
		correction = 0.5
	case dz < 0:
		correction = -0.5
	}
	sigma := math.Sqrt(float64(xLen*yLen/12) *
		((xLen + yLen + 1) - tieSum/float64((xLen+yLen)*(xLen+yLen-1))))
	if sigma == 0 {
		return 0, errAllTied
	}
	return (dz-correction)/sigma - quantile, nil
}

// mannWhitneyUTest is MannWhitney.mannWhitneyUTest (calculateConfidenceInterval):
// x is the experiment, y the control, confidenceLevel e.g. 0.98.
func mannWhitneyUTest(x, y []float64, confidenceLevel float64) (mannWhitneyResult, error) {
	if len(x) == 0 || len(y) == 0 {
		return mannWhitneyResult{}, errors.New("analysis: Mann-Whitney test needs data on both sides") // Scala: empty.min
	}
	alpha := 1.0 - confidenceLevel
	muMin := scalaMin(x) - scalaMax(y)
	muMax := scalaMax(x) - scalaMin(y)

	diff := wilcoxonDiff
	if fast, ok := newSortedWilcoxon(x, y); ok {
		diff = fast.diff
	}
	f := func(zq float64) func(float64) (float64, error) {
		return func(mu float64) (float64, error) { return diff(mu, zq, x, y) }
	}
	findRoot := func(zq float64) (float64, error) {
		fLower, err := diff(muMin, zq, x, y)
		if err != nil {
			return 0, err
		}
		fUpper, err := diff(muMax, zq, x, y)
		if err != nil {
			return 0, err
		}
		switch {
		case fLower <= 0:
			return muMin, nil
		case fUpper >= 0:
			return muMax, nil
		}
		return brentSolve(muMin, muMax, fLower, fUpper, f(zq))
	}

	zQuant := normalInverseCDF(alpha / 2)
	lower, err := findRoot(-zQuant)
	if err != nil {
		return mannWhitneyResult{}, err
	}
	upper, err := findRoot(zQuant)
	if err != nil {
		return mannWhitneyResult{}, err
	}
	fLower, err := diff(muMin, 0, x, y)
	if err != nil {
		return mannWhitneyResult{}, err
	}
	fUpper, err := diff(muMax, 0, x, y)
	if err != nil {
		return mannWhitneyResult{}, err
	}
	estimate, err := brentSolve(muMin, muMax, fLower, fUpper, f(0))
	if err != nil {
		return mannWhitneyResult{}, err
	}
	return mannWhitneyResult{lower: lower, upper: upper, estimate: estimate}, nil
}

// scalaMin is Scala 2.12's TraversableOnce.min over Ordering.Double:
// reduceLeft((a, b) => if (a <= b) a else b). The caller guarantees values.
func scalaMin(values []float64) float64 {
	m := values[0]
	for _, v := range values[1:] {
		if !(m <= v) {
			m = v
		}
	}
	return m
}

// scalaMax is reduceLeft((a, b) => if (a >= b) a else b).
func scalaMax(values []float64) float64 {
	m := values[0]
	for _, v := range values[1:] {
		if !(m >= v) {
			m = v
		}
	}
	return m
}

// Constants of kayenta-mannwhitney BrentSolver.java.
const (
	brentMaxIterations = 1000
	brentTolerance     = 1e-4
	brentEpsilon       = 2.220446049250313e-16
)

// brentSolve is Kayenta's BrentSolver.solve, a port of R's zeroin: a zero of
// f in [ax, bx] given fa = f(ax) and fb = f(bx), to an absolute tolerance of
// about 1e-4. Like Kayenta it returns the last iterate if it does not
// converge in 1000 steps.
func brentSolve(ax, bx, fa, fb float64, f func(float64) (float64, error)) (float64, error) {
	a, b := ax, bx
	c, fc := a, fa

	if precisionEquals(fa, 0) {
		return a, nil
	}
	if precisionEquals(fb, 0) {
		return b, nil
	}

	for iteration := brentMaxIterations + 1; iteration > 0; iteration-- {
		prevStep := b - a

		if math.Abs(fc) < math.Abs(fb) {
			a, b, c = b, c, b
			fa, fb, fc = fb, fc, fb
		}
		tolAct := float64(2*brentEpsilon*math.Abs(b)) + brentTolerance/2
		newStep := (c - b) / 2

		if math.Abs(newStep) <= tolAct || precisionEquals(fb, 0) {
			return b, nil
		}

		if math.Abs(prevStep) >= tolAct && math.Abs(fa) > math.Abs(fb) {
			var p, q float64
			cb := c - b
			if a == c {
				t1 := fb / fa
				p = cb * t1
				q = 1.0 - t1
			} else { // inverse quadratic interpolation
				q = fa / fc
				t1 := fb / fc
				t2 := fb / fa
				p = t2 * (float64(float64(cb*q)*(q-t1)) - float64((b-a)*(t1-1.0)))
				q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
			}
			if p > 0.0 {
				q = -q
			} else {
				p = -p
			}
			if p < float64(float64(0.75*cb)*q)-math.Abs(float64(tolAct*q))/2 && p < math.Abs(prevStep*q/2) {
				newStep = p / q
			}
		}

		if math.Abs(newStep) < tolAct {
			if newStep > 0 {
				newStep = tolAct
			} else {
				newStep = -tolAct
			}
		}
		a, fa = b, fb
		b += newStep
		var err error
		if fb, err = f(b); err != nil {
			return 0, err
		}
		if (fb > 0 && fc > 0) || (fb < 0 && fc < 0) {
			c, fc = a, fa
		}
	}
	return b, nil
}

// precisionEquals is Commons Math's Precision.equals(x, y) (maxUlps = 1).
func precisionEquals(x, y float64) bool {
	const maxUlps = 1
	xInt := int64(math.Float64bits(x))
	yInt := int64(math.Float64bits(y))
	var isEqual bool
	if (xInt^yInt)&math.MinInt64 == 0 {
		d := xInt - yInt
		if d < 0 {
			d = -d
		}
		isEqual = d <= maxUlps
	} else {
		const positiveZeroBits = 0
		const negativeZeroBits = math.MinInt64
		var deltaPlus, deltaMinus int64
		if xInt < yInt {
			deltaPlus = yInt - positiveZeroBits
			deltaMinus = xInt - negativeZeroBits
		} else {
			deltaPlus = xInt - positiveZeroBits
			deltaMinus = yInt - negativeZeroBits
		}
		if deltaPlus > maxUlps {
			isEqual = false
		} else {
			isEqual = deltaMinus <= maxUlps-deltaPlus
		}
	}
	return isEqual && !math.IsNaN(x) && !math.IsNaN(y)
}

// normalInverseCDF is Commons Math's NormalDistribution(0, 1)
// .inverseCumulativeProbability(p) = 0 + 1 * sqrt(2) * erfInv(2p - 1).
func normalInverseCDF(p float64) float64 {
	if p < 0 || p > 1 {
		return math.NaN()
	}
	return 0 + float64(1*math.Sqrt2*erfInv(2*p-1))
}

// erfInv is Commons Math 3.6.1's Erf.erfInv (Giles' single-precision-free
// approximation).
func erfInv(x float64) float64 {
	w := -math.Log((1.0 - x) * (1.0 + x))
	var p float64
	horner := func(cs ...float64) {
		p = cs[0]
		for _, c := range cs[1:] {
			p = c + float64(p*w)
		}
	}
	switch {
	case w < 6.25:
		w -= 3.125
		horner(
			-3.6444120640178196996e-21,
			-1.685059138182016589e-19,
			1.2858480715256400167e-18,
			1.115787767802518096e-17,
			-1.333171662854620906e-16,
			2.0972767875968561637e-17,
			6.6376381343583238325e-15,
			-4.0545662729752068639e-14,
			-8.1519341976054721522e-14,
			2.6335093153082322977e-12,
			-1.2975133253453532498e-11,
			-5.4154120542946279317e-11,
			1.051212273321532285e-09,
			-4.1126339803469836976e-09,
			-2.9070369957882005086e-08,
			4.2347877827932403518e-07,
			-1.3654692000834678645e-06,
			-1.3882523362786468719e-05,
			0.0001867342080340571352,
			-0.00074070253416626697512,
			-0.0060336708714301490533,
			0.24015818242558961693,
			1.6536545626831027356,
		)
	case w < 16.0:
		w = math.Sqrt(w) - 3.25
		horner(
			2.2137376921775787049e-09,
			9.0756561938885390979e-08,
			-2.7517406297064545428e-07,
			1.8239629214389227755e-08,
			1.5027403968909827627e-06,
			-4.013867526981545969e-06,
			2.9234449089955446044e-06,
			1.2475304481671778723e-05,
			-4.7318229009055733981e-05,
			6.8284851459573175448e-05,
			2.4031110387097893999e-05,
			-0.0003550375203628474796,
			0.00095328937973738049703,
			-0.0016882755560235047313,
			0.0024914420961078508066,
			-0.0037512085075692412107,
			0.005370914553590063617,
			1.0052589676941592334,
			3.0838856104922207635,
		)
	case !math.IsInf(w, 0):
		w = math.Sqrt(w) - 5.0
		horner(
			-2.7109920616438573243e-11,
			-2.5556418169965252055e-10,
			1.5076572693500548083e-09,
			-3.7894654401267369937e-09,
			7.6157012080783393804e-09,
			-1.4960026627149240478e-08,
			2.9147953450901080826e-08,
			-6.7711997758452339498e-08,
			2.2900482228026654717e-07,
			-9.9298272942317002539e-07,
			4.5260625972231537039e-06,
			-1.9681778105531670567e-05,
			7.5995277030017761139e-05,
			-0.00021503011930044477347,
			-0.00013871931833623122026,
			1.0103004648645343977,
			4.8499064014085844221,
		)
	default:
		p = math.Inf(1)
	}
	return p * x
}
