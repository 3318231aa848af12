package storage

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// TestHashStripeSharedHash: series whose label sets hash alike (forced
// here) are all found, and removing any of them keeps the others.
func TestHashStripeSharedHash(t *testing.T) {
	st := &hashStripe{byHash: map[uint64]*memSeries{}}
	const h = 42
	var ss []*memSeries
	for i, v := range []string{"a", "b", "c", "d"} {
		s := newMemSeries(uint64(i+1), labels.FromStrings("x", v), h)
		st.put(s)
		ss = append(ss, s)
	}
	other := newMemSeries(9, labels.FromStrings("x", "z"), 7)
	st.put(other)
	check := func(present ...*memSeries) {
		t.Helper()
		in := map[*memSeries]bool{}
		for _, s := range present {
			in[s] = true
		}
		for _, s := range append(ss, other) {
			if got := st.find(s.lset, s.hash); (got == s) != in[s] || (got != nil && got != s) {
				t.Fatalf("find(%s) = %v, present %v", s.lset, got, in[s])
			}
		}
	}
	check(ss[0], ss[1], ss[2], ss[3], other)
	st.delete(ss[0]) // the one in byHash
	check(ss[1], ss[2], ss[3], other)
	st.delete(ss[2]) // one in more
	check(ss[1], ss[3], other)
	st.delete(ss[2]) // not there any more
	check(ss[1], ss[3], other)
	st.delete(ss[1])
	st.delete(ss[3])
	check(other)
	if len(st.byHash) != 1 || len(st.more) != 0 {
		t.Fatalf("left %d in byHash, %d in more", len(st.byHash), len(st.more))
	}
}
