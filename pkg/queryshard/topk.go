package queryshard

import (
	"container/heap"
	"math"
	"sort"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// selection is a range query topk(k, a) or bottomk(k, a) whose a is its
// only node, evaluated whole by a rollup: the groups of the rollup are
// what the engine would read back through the embedded selector, in the
// same order and with the same values at the same steps, so the selection
// is made here with the engine's heap (aggregationK) instead of by a pass
// of the engine over them.
type selection struct {
	bottom bool
	k      int
}

// selectionOf is the selection of a range query expr, or nil.
func selectionOf(expr parser.Expr, found []foundNode, instant bool) *selection {
	if instant || len(found) != 1 || found[0].kind != wholeOrdered || found[0].plan == nil {
		return nil
	}
	a, ok := unparen(expr).(*parser.AggregateExpr)
	if !ok || (a.Op != parser.TOPK && a.Op != parser.BOTTOMK) || a.Without || len(a.Grouping) > 0 {
		return nil
	}
	if inner, ok := unparen(a.Expr).(*parser.AggregateExpr); !ok || inner != found[0].node {
		return nil
	}
	n, ok := unparen(a.Param).(*parser.NumberLiteral)
	// The engine's errors and empty answers (NaN, k < 1, overflows) are
	// its own to give.
	if !ok || math.IsNaN(n.Val) || n.Val < 1 || n.Val >= 1<<53 {
		return nil
	}
	return &selection{bottom: a.Op == parser.BOTTOMK, k: int(n.Val)}
}

// apply selects among groups at each of steps, returning the engine's
// matrix (sorted by labels); false when the engine must (its sample limit
// could be reached).
func (sel *selection) apply(groups []promql.Series, steps []int64, o *RollupOptions) (promql.Matrix, bool) {
	points := 0
	for _, g := range groups {
		points += len(g.Floats)
	}
	if o != nil && o.MaxSamples > 0 && 2*points > o.MaxSamples {
		return nil, false
	}
	next := make([]int, len(groups))
	out := make([]promql.Series, len(groups))
	h := &kHeap{bottom: sel.bottom}
	for _, ts := range steps {
		h.items = h.items[:0]
		// The engine's aggregationK for floats: the first k values in
		// the groups' order, then each value beyond the heap's top
		// replaces it.
		for gi := range groups {
			fl := groups[gi].Floats
			if next[gi] >= len(fl) || fl[next[gi]].T != ts {
				continue
			}
			f := fl[next[gi]].F
			next[gi]++
			switch {
			case len(h.items) < sel.k:
				heap.Push(h, kItem{f: f, g: gi})
			case h.beyondTop(f):
				h.items[0] = kItem{f: f, g: gi}
				if sel.k > 1 {
					heap.Fix(h, 0)
				}
			}
		}
		for _, it := range h.items {
			out[it.g].Floats = append(out[it.g].Floats, promql.FPoint{T: ts, F: it.f})
		}
	}
	var m promql.Matrix
	for gi, s := range out {
		if len(s.Floats) > 0 {
			m = append(m, promql.Series{Metric: groups[gi].Metric, Floats: s.Floats})
		}
	}
	sort.Sort(m)
	return m, true
}

type kItem struct {
	f float64
	g int
}

// kHeap is the engine's vectorByValueHeap (topk: the smallest value on
// top) or vectorByReverseValueHeap (bottomk: the largest), NaN lowest in
// both, over the groups' values at one step.
type kHeap struct {
	bottom bool
	items  []kItem
}

func (h *kHeap) Len() int { return len(h.items) }

func (h *kHeap) Less(i, j int) bool {
	vi, vj := h.items[i].f, h.items[j].f
	if math.IsNaN(vi) {
		return true
	}
	if h.bottom {
		return vi > vj
	}
	return vi < vj
}

func (h *kHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *kHeap) Push(x any)    { h.items = append(h.items, x.(kItem)) }
func (h *kHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}

// beyondTop reports whether f replaces the heap's top (aggregationK).
func (h *kHeap) beyondTop(f float64) bool {
	top := h.items[0].f
	if h.bottom {
		return top > f || (math.IsNaN(top) && !math.IsNaN(f))
	}
	return top < f || (math.IsNaN(top) && !math.IsNaN(f))
}
