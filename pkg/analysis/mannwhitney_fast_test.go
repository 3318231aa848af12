package analysis

import (
	"math"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSortedWilcoxonMatchesWilcoxonDiff checks that the merge-based
// statistic gives wilcoxonDiff's bits on data with ties, signed zeros,
// infinities, tiny and huge values, at the shifts the root finder tries.
func TestSortedWilcoxonMatchesWilcoxonDiff(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	pick := func() float64 {
		switch r.Intn(12) {
		case 0:
			return 0
		case 1:
			return math.Copysign(0, -1)
		case 2:
			return math.Inf(1)
		case 3:
			return math.Inf(-1)
		case 4:
			return float64(r.Intn(5)) // ties
		case 5:
			return r.NormFloat64() * 1e-300
		case 6:
			return r.NormFloat64() * 1e300
		}
		return r.NormFloat64()*10 + 3
	}
	series := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = pick()
		}
		return out
	}
	compared := 0
	for range 2000 {
		x, y := series(1+r.Intn(40)), series(1+r.Intn(40))
		w, ok := newSortedWilcoxon(x, y)
		require.True(t, ok)
		mus := []float64{0, math.Copysign(0, -1), scalaMin(x) - scalaMax(y), scalaMax(x) - scalaMin(y), pick(), r.NormFloat64()}
		for _, mu := range mus {
			for _, q := range []float64{0, 2.326347874040841, -2.326347874040841} {
				want, wantErr := wilcoxonDiff(mu, q, x, y)
				got, gotErr := w.diff(mu, q, x, y)
				require.Equal(t, wantErr, gotErr, "x=%v y=%v mu=%v", x, y, mu)
				require.Equal(t, math.Float64bits(want), math.Float64bits(got), "x=%v y=%v mu=%v q=%v: %v != %v", x, y, mu, q, got, want)
				compared++
			}
		}
	}
	require.Greater(t, compared, 30000)
}
