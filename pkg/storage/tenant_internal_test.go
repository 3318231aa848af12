package storage

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
)

// TestHashStripeSharedHash: series whose label sets hash alike (forced
// here) are all found, and removing any of them keeps the others.
func TestHashStripeSharedHash(t *testing.T) {
	st := &hashStripe{byHash: map[uint64]*memSeries{}}
	syms := newSymbolTable()
	const h = 42
	var ss []*memSeries
	hash := map[*memSeries]uint64{}
	lsets := map[*memSeries]labels.Labels{}
	// Label sets that are prefixes of each other, and share ids.
	for i, ls := range []labels.Labels{
		labels.FromStrings("x", "a"),
		labels.FromStrings("x", "a", "y", "b"),
		labels.FromStrings("x", "b"),
		labels.FromStrings("x", "b", "y", "a"),
	} {
		s := newMemSeries(uint64(i+1), syms.intern(ls))
		lsets[s] = ls
		st.put(s, h)
		hash[s] = h
		ss = append(ss, s)
	}
	other := newMemSeries(9, syms.intern(labels.FromStrings("x", "z")))
	lsets[other] = labels.FromStrings("x", "z")
	st.put(other, 7)
	hash[other] = 7
	check := func(present ...*memSeries) {
		t.Helper()
		in := map[*memSeries]bool{}
		for _, s := range present {
			in[s] = true
		}
		for _, s := range append(ss, other) {
			if got := st.find(syms, lsets[s], hash[s]); (got == s) != in[s] || (got != nil && got != s) {
				t.Fatalf("find(%s) = %v, present %v", lsets[s], got, in[s])
			}
		}
		// Labels no series has, under the shared hash.
		for _, ls := range []labels.Labels{labels.EmptyLabels(), labels.FromStrings("x", "a", "y", "b", "z", "c"), labels.FromStrings("y", "b"), labels.FromStrings("x", "z")} {
			if got := st.find(syms, ls, h); got != nil {
				t.Fatalf("find(%s) = series %d", ls, got.ref)
			}
		}
	}
	check(ss[0], ss[1], ss[2], ss[3], other)
	st.delete(ss[0], h) // the one in byHash
	check(ss[1], ss[2], ss[3], other)
	st.delete(ss[2], h) // one in more
	check(ss[1], ss[3], other)
	st.delete(ss[2], h) // not there any more
	check(ss[1], ss[3], other)
	st.delete(ss[1], h)
	st.delete(ss[3], h)
	check(other)
	if len(st.byHash) != 1 || len(st.more) != 0 {
		t.Fatalf("left %d in byHash, %d in more", len(st.byHash), len(st.more))
	}
}

// TestIndexIDsExhausted: index ids are 32-bit; a tenant that gave out
// nearly all of them refuses new series with a clear error (never wraps
// an id onto another series' postings) and still takes samples of the
// series it has.
func TestIndexIDsExhausted(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := labels.FromStrings("__name__", "up", "i", "old")
	app := db.AppenderV2(ctx)
	if _, err := app.Append(0, old, 0, 1000, 1, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	db.tenantFor(ctx).nextIdx.Store(maxIndexIDs + 1)

	app = db.AppenderV2(ctx)
	_, err = app.Append(0, labels.FromStrings("__name__", "up", "i", "new"), 0, 2000, 1, nil, nil, promstorage.AOptions{})
	if !errors.Is(err, ErrIndexIDsExhausted) {
		t.Fatalf("new series after the ids ran out: %v, want ErrIndexIDsExhausted", err)
	}
	_ = app.Rollback()
	app = db.AppenderV2(ctx)
	if _, err := app.Append(0, old, 0, 2000, 2, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatalf("a known series after the ids ran out: %v", err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}
