package storage

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// randomLabelSets are label sets drawn from a few names and many values
// (over 16384 symbols, so that ids take one, two and three bytes), some
// prefixes of others, some with values past 1 KB (StableHash's buffer).
func randomLabelSets(r *rand.Rand, n int) []labels.Labels {
	names := []string{"__name__", "a", "b", "instance", "job", "le", "x"}
	var out []labels.Labels
	for i := 0; i < n; i++ {
		var b labels.ScratchBuilder
		for _, name := range names {
			if r.Intn(3) == 0 {
				continue
			}
			var v string
			switch r.Intn(10) {
			case 0:
				v = strings.Repeat("v", 300+r.Intn(900))
			case 1, 2, 3:
				v = strconv.Itoa(r.Intn(40000))
			default:
				v = strconv.Itoa(r.Intn(5))
			}
			b.Add(name, v)
		}
		b.Sort()
		ls := b.Labels()
		out = append(out, ls)
		if i%7 == 0 && ls.Len() > 1 {
			// A prefix of it.
			lb := labels.NewBuilder(ls)
			var last string
			ls.Range(func(l labels.Label) { last = l.Name })
			lb.Del(last)
			out = append(out, lb.Labels())
		}
	}
	return out
}

// The interned form answers as the labels do: built back, compared
// (equality with any other set, order), hashed (Hash of the built labels,
// StableHash, shards), looked up by name and written as a series record.
func TestSymbolTableMatchesLabels(t *testing.T) {
	if !labelsFormatMatches {
		t.Fatal("labels.Labels.Bytes is not the stringlabels format: every write's look-up compares label by label")
	}
	if !labelsFromData {
		t.Fatal("labels cannot be made from their encoding: every query's series are built label by label")
	}
	t.Run("bytes", testSymbolTableMatchesLabels)
	t.Run("label by label", func(t *testing.T) {
		labelsFormatMatches, labelsFromData = false, false
		defer func() { labelsFormatMatches, labelsFromData = true, true }()
		testSymbolTableMatchesLabels(t)
	})
}

func testSymbolTableMatchesLabels(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	sets := randomLabelSets(r, 20000)
	syms := newSymbolTable()
	encs := make([]string, len(sets))
	for i, ls := range sets {
		encs[i] = syms.intern(ls)
	}
	if _, slots := syms.stats(); slots < 1<<14 {
		t.Fatalf("%d labels: ids of three bytes not covered", slots)
	}
	var sb labels.ScratchBuilder
	specs := []ShardSpec{{Labels: []string{"job", "x"}, Index: 1, Count: 3}, {Labels: []string{"le"}, Without: true, Index: 0, Count: 2}}
	for i, ls := range sets {
		enc := encs[i]
		got := syms.labels(enc, &sb)
		if !labels.Equal(got, ls) || got.Hash() != ls.Hash() {
			t.Fatalf("built %s, want %s", got, ls)
		}
		if !syms.equal(enc, ls) {
			t.Fatalf("%s not equal to itself", ls)
		}
		if syms.stableHash(enc) != labels.StableHash(ls) {
			t.Fatalf("%s: stable hash differs", ls)
		}
		for _, name := range []string{"__name__", "b", "le", "zz", ""} {
			if syms.get(enc, name) != ls.Get(name) {
				t.Fatalf("%s: get(%q) = %q", ls, name, syms.get(enc, name))
			}
		}
		for _, spec := range specs {
			if spec.containsInterned(syms, enc) != spec.Contains(ls) {
				t.Fatalf("%s: shard %+v differs", ls, spec)
			}
		}
		if string(encodeInternedSeriesRecord(nil, 3, 4, syms, enc)) != string(encodeSeriesRecord(nil, 3, 4, ls)) {
			t.Fatalf("%s: series record differs", ls)
		}
		for k := 0; k < 5; k++ {
			j := r.Intn(len(sets))
			o := sets[j]
			if syms.equal(enc, o) != labels.Equal(ls, o) {
				t.Fatalf("equal(%s, %s) = %v", ls, o, !labels.Equal(ls, o))
			}
			want, got := labels.Compare(ls, o), syms.compare(enc, encs[j])
			if sign(want) != sign(got) {
				t.Fatalf("compare(%s, %s) = %d, want the sign of %d", ls, o, got, want)
			}
		}
	}
	// Labels whose strings the table does not have.
	if syms.equal(encs[0], labels.FromStrings("__name__", "not-there")) {
		t.Fatal("equal to labels with an unknown value")
	}
	empty := syms.intern(labels.EmptyLabels())
	if empty != "" || !syms.equal(empty, labels.EmptyLabels()) || syms.equal(empty, sets[0]) || syms.equal(encs[0], labels.EmptyLabels()) {
		t.Fatal("the empty label set")
	}
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// A symbol is freed only once no series holds it and the batch it was
// sealed in has had its grace; a symbol taken again before that keeps its
// id; freed ids are reused.
func TestSymbolTableReleaseAndReuse(t *testing.T) {
	syms := newSymbolTable()
	a := syms.intern(labels.FromStrings("job", "a", "pod", "p1"))
	b := syms.intern(labels.FromStrings("job", "a", "pod", "p2"))
	if n, _ := syms.stats(); n != 3 {
		t.Fatalf("%d labels, want 3", n)
	}
	syms.release([]string{a})
	syms.seal(5, 7)
	if syms.collect(4, 100) != 0 || syms.collect(100, 6) != 0 {
		t.Fatal("freed before the grace")
	}
	if n := syms.collect(5, 7); n != 1 { // pod=p1 only: job=a is b's
		t.Fatalf("freed %d, want 1", n)
	}
	// p2 released, then taken again before its batch is collected.
	syms.release([]string{b})
	syms.seal(8, 8)
	c := syms.intern(labels.FromStrings("job", "a", "pod", "p2"))
	if c != b {
		t.Fatal("a symbol taken again before it was freed changed its id")
	}
	if n := syms.collect(8, 8); n != 0 {
		t.Fatalf("freed %d symbols still held", n)
	}
	d := syms.intern(labels.FromStrings("job", "a", "pod", "p3")) // reuses p1's id
	if _, slots := syms.stats(); slots != 3 {
		t.Fatalf("%d slots, want 3 (a freed id reused)", slots)
	}
	for enc, want := range map[string]labels.Labels{c: labels.FromStrings("job", "a", "pod", "p2"), d: labels.FromStrings("job", "a", "pod", "p3")} {
		if got := syms.labels(enc, nil); !labels.Equal(got, want) {
			t.Fatalf("%s, want %s", got, want)
		}
	}
	// job=a stays d's.
	syms.release([]string{c})
	syms.seal(9, 9)
	if n := syms.collect(9, 9); n != 1 { // pod=p2
		t.Fatalf("freed %d, want 1", n)
	}
}

// Series come and go with retention (each generation's pods are new
// values, and a label name of its own): the table holds the live series'
// symbols and those of one generation being replaced, not every symbol
// ever seen; the live series' labels read right after ids are reused; a
// reader and an appender that hold a removed series across the removal
// keep reading its labels until they finish.
func TestSymbolTableBoundedUnderChurn(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), Retention: 48 * time.Hour, CallerRunsBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const day = int64(24 * time.Hour / time.Millisecond)
	const perGen = 300
	// __name__=m (shared), gen=<gen>, n<gen>=x and the pods.
	const shared, ownPerGen = 1, perGen + 2
	genLabels := func(gen, i int) labels.Labels {
		return labels.FromStrings("__name__", "m", "gen", strconv.Itoa(gen), "pod", fmt.Sprintf("pod-%d-%d", gen, i), "n"+strconv.Itoa(gen), "x")
	}
	symbolsNow := func() int {
		n, _ := db.tenantFor(ctx).symbols.stats()
		return n
	}
	extra := 0 // symbols the test itself holds
	maxSlots := 0
	for gen := 0; gen < 12; gen++ {
		ts := int64(gen)*3*day + 1000
		app := db.Appender(ctx)
		for i := 0; i < perGen; i++ {
			if _, err := app.Append(0, genLabels(gen, i), ts, float64(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
		th := db.tenantFor(ctx)
		var (
			held     *memSeries
			heldWant labels.Labels
			reader   *rangeHead
			heldApp  = db.Appender(ctx)
		)
		switch gen {
		case 5:
			// A reader holds a series of generation 4 across its removal.
			reader = db.newRangeHead(th, math.MinInt64, math.MaxInt64)
			heldWant = genLabels(4, 7)
			if held = th.get(heldWant, heldWant.Hash()); held == nil {
				t.Fatal("generation 4 not there")
			}
		case 8:
			// An appender holds a series of generation 7 across its
			// removal: its commit puts the sample in a new series of
			// those labels.
			if _, err := heldApp.Append(0, genLabels(7, 3), ts+1000, 42); err != nil {
				t.Fatal(err)
			}
		}
		if err := CheckpointForTest(db); err != nil {
			t.Fatal(err)
		}
		if err := db.applyRetention(ctx); err != nil {
			t.Fatal(err)
		}
		db.reclaim()
		_, slots := th.symbols.stats()
		maxSlots = max(maxSlots, slots)
		switch gen {
		case 5:
			// The removed generation's symbols wait for the reader; new
			// symbols take other ids, and the held series reads as it was.
			if got := symbolsNow(); got != shared+2*ownPerGen+extra {
				t.Fatalf("generation 5, reader open: %d symbols, want %d", got, shared+2*ownPerGen+extra)
			}
			_ = th.symbols.intern(genLabels(99, 1)) // gen=99, pod=pod-99-1, n99=x
			extra += 3
			if got := th.seriesLabels(held); !labels.Equal(got, heldWant) {
				t.Fatalf("held series reads %s, want %s", got, heldWant)
			}
			reader.close()
			db.reclaim()
		case 8:
			if got := symbolsNow(); got != shared+2*ownPerGen+extra {
				t.Fatalf("generation 8, appender open: %d symbols, want %d", got, shared+2*ownPerGen+extra)
			}
			if err := heldApp.Commit(); err != nil {
				t.Fatal(err)
			}
			db.reclaim()
			// gen=7, n7=x and pod=pod-7-3 are the recreated series'.
			if got := symbolsNow(); got != shared+ownPerGen+extra+3 {
				t.Fatalf("generation 8 after the commit: %d symbols, want %d", got, shared+ownPerGen+extra+3)
			}
			q, err := db.Querier(math.MinInt64, math.MaxInt64)
			if err != nil {
				t.Fatal(err)
			}
			set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, "gen", "7"))
			var got []string
			for set.Next() {
				got = append(got, set.At().Labels().String())
			}
			if want := []string{genLabels(7, 3).String()}; !slices.Equal(got, want) || set.Err() != nil {
				t.Fatalf("generation 7 after the held commit: %v, want %v (%v)", got, want, set.Err())
			}
			_ = q.Close()
			continue
		default:
			_ = heldApp.Rollback()
		}
		if got := symbolsNow(); got != shared+ownPerGen+extra {
			t.Fatalf("generation %d: %d symbols, want %d", gen, got, shared+ownPerGen+extra)
		}
	}
	if maxSlots > shared+2*ownPerGen+16 {
		t.Fatalf("%d id slots for at most %d symbols held at once: freed ids not reused", maxSlots, shared+2*ownPerGen+6)
	}
	// The live series read right: the last generation's, and generation
	// 7's one series the held appender recreated.
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
	var got []string
	for set.Next() {
		got = append(got, set.At().Labels().String())
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < perGen; i++ {
		want = append(want, genLabels(11, i).String())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%d series after the churn, want %d; first %v", len(got), len(want), got[:min(3, len(got))])
	}
	values, _, err := q.LabelValues(ctx, "gen", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(values, []string{"11"}) {
		t.Fatalf("gen values %v", values)
	}
}

// The comparison a write's look-up makes, on label sets like
// peer-bench's (100 series an instance): the interned form against
// labels.Equal of a series' own labels.
func BenchmarkSeriesLabelsEqual(b *testing.B) {
	const n = 100_000
	syms := newSymbolTable()
	sets := make([]labels.Labels, n)
	own := make([]labels.Labels, n)
	encs := make([]string, n)
	for i := range sets {
		sets[i] = labels.FromStrings("__name__", "http_requests_total", "instance", fmt.Sprintf("10.%d.%d.%d:8080", 1+i/625000, (i/2500)%250, (i/100)%250+1),
			"job", "api", "method", strconv.Itoa(i%2), "route", "/api/v1/orders/"+strconv.Itoa(i%5), "service", "checkout", "status", strconv.Itoa(i%10))
		own[i] = sets[i].Copy()
		encs[i] = syms.intern(sets[i])
	}
	b.Run("interned", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if !syms.equal(encs[i%n], sets[i%n]) {
				b.Fatal("not equal")
			}
		}
	})
	b.Run("labels", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if !labels.Equal(own[i%n], sets[i%n]) {
				b.Fatal("not equal")
			}
		}
	})
}
