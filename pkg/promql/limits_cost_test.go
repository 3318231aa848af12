package promql

import (
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// balanced returns a balanced tree of additions of n leaves, in parentheses.
func balanced(n int) string {
	if n == 1 {
		return "x"
	}
	return "(" + balanced(n/2) + "+" + balanced(n-n/2) + ")"
}

// TestParseCostWithinLimits: the queries that cost the parser most per
// byte, at the default limits, parse within a bounded allocation; one step
// beyond a limit is refused before the parser runs. (The parser's
// allocation grows faster than linearly with nesting: this is the bound
// the default limits buy.)
func TestParseCostWithinLimits(t *testing.T) {
	d := DefaultOptions()
	fill := func(prefix, unit, suffix string) string {
		n := (d.MaxQueryLength - len(prefix) - len(suffix)) / len(unit)
		return prefix + strings.Repeat(unit, n) + suffix
	}
	half := d.MaxQueryDepth / 2
	for name, q := range map[string]string{
		"parentheses":    strings.Repeat("(", d.MaxQueryDepth) + "1" + strings.Repeat(")", d.MaxQueryDepth),
		"unary":          strings.Repeat("-", d.MaxQueryDepth) + "1",
		"power":          strings.Repeat("x^", d.MaxQueryDepth) + "1",
		"addition chain": strings.Repeat("x+", d.MaxQueryDepth) + "1",
		"calls":          strings.Repeat("abs(", d.MaxQueryDepth) + "x" + strings.Repeat(")", d.MaxQueryDepth),
		"chains side by side": func() string {
			chain := "(" + strings.Repeat("x+", half-2) + "x)"
			var b strings.Builder
			b.WriteString(chain)
			for b.Len()+len(chain)+1 < d.MaxQueryLength {
				b.WriteString(" or " + chain)
				if b.Len() > d.MaxQueryLength/2 {
					break
				}
			}
			return b.String()
		}(),
		"balanced tree": balanced(d.MaxQueryLength / 4),
		"long regexp":   fill(`x{a=~"`, "a|", `"}`),
		"many matchers": fill(`x{`, `a="b",`, `c="d"}`),
		"sort_by_label": fill(`sort_by_label(x`, `,"a"`, `)`),
	} {
		if len(q) > d.MaxQueryLength {
			t.Fatalf("%s: %d bytes", name, len(q))
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := NewParser().ParseExpr(q)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%-20s %6d bytes, depth %3d: %5.1f MB allocated, err %v", name, len(q), QueryDepth(q, 0), float64(alloc)/1e6, err)
		require.Less(t, alloc, uint64(64<<20), name)
	}
	_, err := NewParser().ParseExpr(strings.Repeat("x^", d.MaxQueryDepth+1) + "1")
	require.ErrorContains(t, err, FlagMaxQueryDepth)
}
