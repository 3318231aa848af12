package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/index"
)

// TestMemPostingsMatchesPrometheus adds and deletes random series in
// memPostings and in Prometheus' MemPostings and wants the same answers
// from every reading method.
func TestMemPostingsMatchesPrometheus(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	ours, theirs := newMemPostings(), index.NewMemPostings()
	sets := map[uint32]labels.Labels{}
	id := uint32(0)
	for round := range 20 {
		for range 200 {
			id++
			ls := labels.FromStrings("__name__", fmt.Sprint("m", r.IntN(5)), "job", fmt.Sprint("j", r.IntN(3)), "instance", fmt.Sprint("i", r.IntN(40)))
			if r.IntN(3) == 0 {
				b := labels.NewBuilder(ls)
				b.Set("extra", fmt.Sprint("e", r.IntN(4)))
				ls = b.Labels()
			}
			sets[id] = ls
			ours.Add(id, ls)
			theirs.Add(storage.SeriesRef(id), ls)
		}
		deleted := map[storage.SeriesRef]struct{}{}
		affected := map[labels.Label]struct{}{}
		for k, ls := range sets {
			if r.IntN(10) == 0 {
				deleted[storage.SeriesRef(k)] = struct{}{}
				ls.Range(func(l labels.Label) { affected[l] = struct{}{} })
				delete(sets, k)
			}
		}
		ours.Delete(deleted, affected)
		theirs.Delete(deleted, affected)

		expand := func(p index.Postings) []storage.SeriesRef {
			t.Helper()
			out, err := index.ExpandPostings(p)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		same := func(what string, a, b index.Postings) {
			t.Helper()
			if x, y := expand(a), expand(b); !slices.Equal(x, y) {
				t.Fatalf("round %d %s: %v, want %v", round, what, x, y)
			}
		}
		sorted := func(s []string) []string { slices.Sort(s); return s }
		if a, b := sorted(ours.LabelNames()), sorted(theirs.LabelNames()); !slices.Equal(a, b) {
			t.Fatalf("label names %v, want %v", a, b)
		}
		for _, name := range []string{"__name__", "job", "instance", "extra", "none", ""} {
			if a, b := sorted(ours.LabelValues(ctx, name, nil)), sorted(theirs.LabelValues(ctx, name, nil)); !slices.Equal(a, b) {
				t.Fatalf("values of %s %v, want %v", name, a, b)
			}
			same("all values of "+name, ours.PostingsForAllLabelValues(ctx, name), theirs.PostingsForAllLabelValues(ctx, name))
			match := func(v string) bool { return strings.HasSuffix(v, "1") || strings.HasSuffix(v, "3") }
			same("matching "+name, ours.PostingsForLabelMatching(ctx, name, match), theirs.PostingsForLabelMatching(ctx, name, match))
			vals := []string{"m1", "j2", "i7", "e0", "i39"}
			same("values of "+name, ours.Postings(ctx, name, vals...), theirs.Postings(ctx, name, vals...))
		}
		same("all", ours.Postings(ctx, "", ""), theirs.All())
		// Seek, as intersections use it.
		a := index.Intersect(ours.Postings(ctx, "job", "j1"), ours.Postings(ctx, "instance", "i3", "i4"))
		b := index.Intersect(theirs.Postings(ctx, "job", "j1"), theirs.Postings(ctx, "instance", "i3", "i4"))
		same("intersection", a, b)
		var sa, sb []string
		for it := ours.Symbols(); it.Next(); {
			sa = append(sa, it.At())
		}
		for it := theirs.Symbols(); it.Next(); {
			sb = append(sb, it.At())
		}
		if !slices.Equal(sa, sb) {
			t.Fatalf("symbols %v, want %v", sa, sb)
		}
		st, wt := ours.Stats("__name__", 100, labels.SizeOfLabels), theirs.Stats("__name__", 100, labels.SizeOfLabels)
		if st.NumLabelPairs != wt.NumLabelPairs || len(st.CardinalityMetricsStats) != len(wt.CardinalityMetricsStats) || len(st.LabelValuePairsStats) != len(wt.LabelValuePairsStats) {
			t.Fatalf("stats %+v, want %+v", st, wt)
		}
		count := func(ss []index.Stat) map[string]uint64 {
			m := map[string]uint64{}
			for _, s := range ss {
				m[s.Name] = s.Count
			}
			return m
		}
		for _, pair := range [][2][]index.Stat{{st.CardinalityMetricsStats, wt.CardinalityMetricsStats}, {st.CardinalityLabelStats, wt.CardinalityLabelStats}, {st.LabelValueStats, wt.LabelValueStats}, {st.LabelValuePairsStats, wt.LabelValuePairsStats}} {
			if a, b := count(pair[0]), count(pair[1]); fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("stats %v, want %v", a, b)
			}
		}
	}
}
