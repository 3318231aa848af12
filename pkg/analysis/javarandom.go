package analysis

import "math"

// javaRandom is java.util.Random (the generator behind scala.util.Random):
// a 48-bit linear congruential generator and the polar method for
// nextGaussian. Kayenta draws its constant-series noise from one unseeded
// instance (judge utils/RandomUtils.scala); levitated seeds it, so a verdict
// can be reproduced. StrictMath.log/sqrt are replaced by math.Log/Sqrt, which
// may differ in the last bit.
type javaRandom struct {
	seed         int64
	haveNext     bool
	nextGaussian float64
}

const (
	javaRandomMultiplier = 0x5DEECE66D
	javaRandomAddend     = 0xB
	javaRandomMask       = (1 << 48) - 1
)

func newJavaRandom(seed int64) *javaRandom {
	return &javaRandom{seed: (seed ^ javaRandomMultiplier) & javaRandomMask}
}

func (r *javaRandom) next(bits uint) int32 {
	r.seed = (r.seed*javaRandomMultiplier + javaRandomAddend) & javaRandomMask
	return int32(uint64(r.seed) >> (48 - bits))
}

func (r *javaRandom) nextDouble() float64 {
	return float64(int64(r.next(26))<<27+int64(r.next(27))) * (1.0 / (1 << 53))
}

func (r *javaRandom) gaussian() float64 {
	if r.haveNext {
		r.haveNext = false
		return r.nextGaussian
	}
	var v1, v2, s float64
	for {
		v1 = 2*r.nextDouble() - 1
		v2 = 2*r.nextDouble() - 1
		s = float64(v1*v1) + float64(v2*v2)
		if s < 1 && s != 0 {
			break
		}
	}
	multiplier := math.Sqrt(-2 * math.Log(s) / s)
	r.nextGaussian = v2 * multiplier
	r.haveNext = true
	return v1 * multiplier
}
