package rollup

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// extrapolatedRate is Prometheus' (promql/functions.go) for float samples
// without start timestamps, the window being the values fs (two or more)
// from firstT to lastT, ending at ts; rngSeconds is the range's
// Duration.Seconds(). A counter's resets are added only if resets says
// there are some: the loop adds nothing otherwise.
func extrapolatedRate(fs []float64, firstT, lastT, ts, rng int64, rngSeconds float64, isCounter, isRate, resets bool) float64 {
	rangeStart, rangeEnd := ts-rng, ts
	numSamplesMinusOne := len(fs) - 1
	firstF := fs[0]
	resultFloat := fs[numSamplesMinusOne] - firstF
	if isCounter && resets {
		for i := 1; i < len(fs); i++ {
			if fs[i] < fs[i-1] {
				resultFloat += fs[i-1]
			}
		}
	}
	durationToStart := float64(firstT-rangeStart) / 1000
	durationToEnd := float64(rangeEnd-lastT) / 1000
	sampledInterval := float64(lastT-firstT) / 1000
	averageDurationBetweenSamples := sampledInterval / float64(numSamplesMinusOne)
	extrapolationThreshold := averageDurationBetweenSamples * 1.1
	if durationToStart >= extrapolationThreshold {
		durationToStart = averageDurationBetweenSamples / 2
	}
	if isCounter {
		durationToZero := durationToStart
		if resultFloat > 0 && firstF >= 0 {
			durationToZero = sampledInterval * (firstF / resultFloat)
		}
		if durationToZero < durationToStart {
			durationToStart = durationToZero
		}
	}
	if durationToEnd >= extrapolationThreshold {
		durationToEnd = averageDurationBetweenSamples / 2
	}
	factor := 1.0
	if sampledInterval != 0 {
		factor = (sampledInterval + durationToStart + durationToEnd) / sampledInterval
	}
	if isRate {
		factor /= rngSeconds
	}
	return resultFloat * factor
}

// TestComputeRateAsExtrapolatedRate compares computeRate, which keeps what
// it derives from a window's times while they repeat, with a direct copy of
// Prometheus' extrapolatedRate called for every window, bit for bit: over
// regular grids (every window the same shape), jittered times, counter
// resets, negative and zero first values, NaN and values near the float
// limits, and windows where the extrapolation to zero applies.
func TestComputeRateAsExtrapolatedRate(t *testing.T) {
	rnd := rand.New(rand.NewPCG(20, 5))
	values := []func(i int, prev float64) float64{
		func(i int, prev float64) float64 { return prev + rnd.Float64()*10 },                  // counter
		func(i int, prev float64) float64 { return float64(i * 3) },                           // from zero
		func(i int, prev float64) float64 { return rnd.Float64()*100 - 50 },                   // gauge
		func(i int, prev float64) float64 { return math.MaxFloat64 / float64(1+rnd.IntN(4)) }, // near the limit
		func(i int, prev float64) float64 { // counter with resets and a NaN now and then
			switch rnd.IntN(20) {
			case 0:
				return rnd.Float64()
			case 1:
				return math.NaN()
			}
			return prev + rnd.Float64()
		},
		func(i int, prev float64) float64 { return 1e6 + float64(i) }, // far from zero: no extrapolation to zero
	}
	checked, zeroClamped := 0, 0
	for round := range 400 {
		interval := []int64{15_000, 10_000, 60_000, 7_000}[round%4]
		jitter := round%3 == 1
		n := 20 + rnd.IntN(400)
		var buf samples
		ts := int64(1_700_000_000_000) + rnd.Int64N(2)*interval
		if round%5 == 0 {
			ts += rnd.Int64N(interval)
		}
		prev := 0.0
		gen := values[round%len(values)]
		for i := range n {
			v := gen(i, prev)
			buf.t, buf.f = append(buf.t, ts), append(buf.f, v)
			if !math.IsNaN(v) {
				prev = v
			}
			d := interval
			if jitter {
				d += rnd.Int64N(2_001) - 1000
			}
			switch {
			case round%7 == 3 && rnd.IntN(30) == 0:
				d *= 12 // a gap longer than a window
			case round%7 == 5 && rnd.IntN(10) == 0:
				d *= 2 // a missed scrape: windows of the same span with fewer samples
			}
			ts += d
		}
		buf.countResets()
		rng := []time.Duration{5 * time.Minute, time.Minute, 90 * time.Second, 10 * time.Minute}[rnd.IntN(4)]
		step := []int64{60_000, 15_000, 30_000, 7 * 60_000}[rnd.IntN(4)]
		r := Range{Start: buf.t[0] + rnd.Int64N(rng.Milliseconds()), End: ts, Interval: step}
		p := &Plan{rng: rng.Milliseconds(), rngDur: rng}
		for _, f := range []struct{ counter, rate bool }{{true, true}, {true, false}, {false, false}} {
			nsteps := r.steps()
			out, has := make([]float64, nsteps), make([]bool, nsteps)
			p.computeRate(buf, r, out, has, f.counter, f.rate)
			for k := range nsteps {
				end := r.Start + int64(k)*r.Interval
				lo, hi := 0, 0
				for hi < len(buf.t) && buf.t[hi] <= end {
					hi++
				}
				for lo < hi && buf.t[lo] <= end-p.rng {
					lo++
				}
				if hi-lo < 2 {
					if has[k] {
						t.Fatalf("round %d step %d: a value from %d samples", round, k, hi-lo)
					}
					continue
				}
				resets := f.counter && buf.anyReset && buf.resets[hi-1] != buf.resets[lo]
				want := extrapolatedRate(buf.f[lo:hi], buf.t[lo], buf.t[hi-1], end, p.rng, rng.Seconds(), f.counter, f.rate, resets)
				if !has[k] || math.Float64bits(out[k]) != math.Float64bits(want) {
					t.Fatalf("round %d step %d (counter %v, rate %v): %v (has %v), want %v", round, k, f.counter, f.rate, out[k], has[k], want)
				}
				checked++
				first, result := buf.f[lo], buf.f[hi-1]-buf.f[lo]
				if f.counter && result > 0 && first >= 0 {
					si := float64(buf.t[hi-1]-buf.t[lo]) / 1000
					if si*(first/result) < float64(buf.t[lo]-(end-p.rng))/1000 {
						zeroClamped++
					}
				}
			}
		}
	}
	if checked < 50_000 || zeroClamped < 100 {
		t.Fatalf("checked %d windows, %d extrapolated to zero: too few to mean anything", checked, zeroClamped)
	}
	t.Logf("%d windows, %d extrapolated to zero", checked, zeroClamped)
}

// TestFarFromZeroNeverSkipsTheClamp checks farFromZero's shortcut where it
// is closest to wrong: counters whose durationToZero is near the bound it
// tests (firstF / resultFloat within a few ulps of 4 * durationToStart /
// sampledInterval) and near durationToStart itself, over random windows'
// times and magnitudes. Whenever it says far, the division must give a
// durationToZero that is not below durationToStart; and it must say far
// for most counters far from zero, or it saves nothing.
func TestFarFromZeroNeverSkipsTheClamp(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 11))
	far, farWanted := 0, 0
	for range 200_000 {
		n := 2 + rnd.IntN(60)
		sampled := 1 + rnd.Int64N(3_600_000)
		toStart := rnd.Int64N(sampled/int64(n-1)*2 + 1)
		var rt rateTimes
		rt.set(toStart, 0, sampled, n, 300, true)
		result := math.Ldexp(1+rnd.Float64(), rnd.IntN(200)-100)
		var ratio float64
		switch rnd.IntN(3) {
		case 0: // at the shortcut's bound
			ratio = rt.zeroRatio
		case 1: // at durationToStart
			ratio = rt.durationToStart / rt.sampledInterval
		default: // far above
			ratio = rt.zeroRatio * (1 + rnd.Float64()*1e6)
			farWanted++
		}
		first := ratio * result
		for range rnd.IntN(8) {
			first = math.Nextafter(first, math.Inf(2*rnd.IntN(2)-1))
		}
		if first < 0 || math.IsInf(first, 0) {
			continue
		}
		if rt.farFromZero(first, result) {
			far++
			if dz := rt.sampledInterval * (first / result); dz < rt.durationToStart {
				t.Fatalf("far from zero, but durationToZero %v < durationToStart %v (first %v, result %v)", dz, rt.durationToStart, first, result)
			}
		}
	}
	if far < farWanted*9/10 {
		t.Fatalf("far from zero %d times of %d far above the bound", far, farWanted)
	}
}

// TestWindowAsScan compares window's guesses with a scan from the start
// for every step: regular grids (where the guesses hold), jitter, gaps,
// runs of equal steps and windows shorter and longer than the step.
func TestWindowAsScan(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 9))
	guessed := 0
	for round := range 500 {
		var bt []int64
		ts := rnd.Int64N(100_000)
		for range rnd.IntN(300) {
			bt = append(bt, ts)
			d := int64(15_000)
			switch round % 4 {
			case 1:
				d += rnd.Int64N(2_001) - 1000
			case 2:
				if rnd.IntN(20) == 0 {
					d *= 1 + rnd.Int64N(30)
				}
			case 3:
				d = 1 + rnd.Int64N(30_000)
			}
			ts += d
		}
		rng := []int64{60_000, 300_000, 10_000, 15_000}[rnd.IntN(4)]
		step := []int64{60_000, 15_000, 7_000, 600_000}[rnd.IntN(4)]
		var w, e window
		lo, hi, ehi := 0, 0, 0
		for end := rnd.Int64N(200_000); end < ts+2*rng; end += step {
			wantLo, wantHi := 0, 0
			for wantHi < len(bt) && bt[wantHi] <= end {
				wantHi++
			}
			for wantLo < wantHi && bt[wantLo] <= end-rng {
				wantLo++
			}
			dlo, dhi := w.dlo, w.dhi
			if lo, hi = w.next(bt, lo, hi, end-rng, end); lo != wantLo || hi != wantHi {
				t.Fatalf("round %d, window (%d, %d]: [%d, %d), want [%d, %d)", round, end-rng, end, lo, hi, wantLo, wantHi)
			}
			if ehi = e.nextEnd(bt, ehi, end); ehi != wantHi {
				t.Fatalf("round %d, end %d: %d, want %d", round, end, ehi, wantHi)
			}
			if w.dlo == dlo && w.dhi == dhi && dlo > 0 {
				guessed++
			}
		}
	}
	if guessed < 1000 {
		t.Fatalf("%d windows guessed: the guesses are not tested", guessed)
	}
}
