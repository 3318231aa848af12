package storage_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// TestOwnersDoNotOverlap: the kind ranges of keyspace.go are disjoint and
// in key order, and every named kind lies in its owner's range.
func TestOwnersDoNotOverlap(t *testing.T) {
	for i := 1; i < len(storage.Owners); i++ {
		require.Greater(t, storage.Owners[i].First, storage.Owners[i-1].Last, "%s overlaps %s", storage.Owners[i].Name, storage.Owners[i-1].Name)
	}
	kinds := map[storage.Owner][]byte{
		storage.OwnerStorage: {storage.KindSeries, storage.KindChunk, storage.KindWAL, storage.KindExemplar, storage.KindMetadata, storage.KindTenant},
		storage.OwnerEvents:  {storage.KindEvent, storage.KindEventIdem, storage.KindEventOpen, storage.KindEventWindow},
		storage.OwnerAnalysis: {storage.KindCanaryConfig, storage.KindCanaryExecution, storage.KindCanaryByApp,
			storage.KindCanaryPending, storage.KindCanaryPairs},
	}
	for o, ks := range kinds {
		for _, k := range ks {
			require.True(t, k >= o.First && k <= o.Last, "kind %#x is outside %s's range", k, o.Name)
		}
	}
}

// TestNamespaceStaysInItsKinds: a namespace writes, reads and iterates
// only its owner's kinds; a batch with a foreign key is not committed.
func TestNamespaceStaysInItsKinds(t *testing.T) {
	db := storagetest.New(t)
	ev, err := db.Namespace(storage.OwnerEvents)
	require.NoError(t, err)
	an, err := db.Namespace(storage.OwnerAnalysis)
	require.NoError(t, err)
	_, err = db.Namespace(storage.OwnerStorage)
	require.Error(t, err, "nobody gets pkg/storage's own kinds")

	own := append(ev.Prefix(7, storage.KindEvent), 'a')
	foreign := append(an.Prefix(7, storage.KindCanaryConfig), 'a')
	samples := append(storage.TenantPrefix(7, storage.KindSeries), 'a')
	require.NoError(t, ev.Set(own, []byte("v"), true))
	require.ErrorContains(t, ev.Set(foreign, []byte("v"), true), "outside eventstore's kinds")
	require.Error(t, ev.Set(samples, []byte("v"), true))
	require.Error(t, ev.Delete(samples, true))
	_, _, err = ev.Get(foreign)
	require.Error(t, err)
	require.Panics(t, func() { ev.Prefix(7, storage.KindCanaryConfig) })

	b := ev.NewBatch()
	require.NoError(t, b.Set(append(ev.Prefix(7, storage.KindEventIdem), 'k'), []byte("v"), nil))
	require.NoError(t, b.Set(foreign, []byte("v"), nil))
	require.Error(t, ev.Commit(b, true))
	require.NoError(t, b.Close())
	_, _, err = an.Get(foreign)
	require.ErrorIs(t, err, storage.ErrNotFound, "the refused batch wrote nothing")

	b = ev.NewBatch()
	require.NoError(t, b.DeleteRange(ev.Prefix(7, storage.KindEvent), storage.TenantPrefix(7, storage.KindCanaryPairs), nil))
	require.Error(t, ev.Commit(b, true), "a range deletion reaching into another owner's kinds")
	require.NoError(t, b.Close())

	_, err = ev.NewIter(ev.Prefix(7, storage.KindEvent), storage.TenantPrefix(8, storage.KindEvent))
	require.Error(t, err, "an iterator across tenants")
	_, err = ev.NewIter(ev.Prefix(7, storage.KindEvent), nil)
	require.Error(t, err, "an unbounded iterator")
	it, err := ev.NewIter(ev.Prefix(7, storage.KindEvent), storage.PrefixEnd(ev.Prefix(7, storage.OwnerEvents.Last)))
	require.NoError(t, err)
	var n int
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	require.NoError(t, it.Close())
	require.Equal(t, 1, n)

	require.NoError(t, an.Set(append(an.Prefix(9, storage.KindCanaryConfig), 'c'), []byte("v"), true))
	tenants, err := ev.Tenants()
	require.NoError(t, err)
	require.Equal(t, []uint32{7}, tenants)
	tenants, err = an.Tenants()
	require.NoError(t, err)
	require.Equal(t, []uint32{9}, tenants)
	var keys int
	require.NoError(t, an.Each(func(k, _ []byte) bool { keys++; return true }))
	require.Equal(t, 1, keys)
}

func TestPrefixEnd(t *testing.T) {
	require.Equal(t, []byte{0, 0, 0, 1, 0x41}, storage.PrefixEnd([]byte{0, 0, 0, 1, 0x40}))
	require.Equal(t, []byte{0, 0, 0, 2}, storage.PrefixEnd([]byte{0, 0, 0, 1, 0xff}))
	require.Nil(t, storage.PrefixEnd([]byte{0xff, 0xff}))
}

func TestRecordCodec(t *testing.T) {
	c := storage.RecordCodec{Owner: "x"}
	b, err := c.Encode(map[string]int{"a": 1})
	require.NoError(t, err)
	require.Equal(t, "\x01{\"a\":1}", string(b))
	var v map[string]int
	require.NoError(t, c.Decode(b, &v))
	require.Equal(t, 1, v["a"])
	require.ErrorContains(t, c.Decode([]byte("\x02{}"), &v), "x: record version [2] is not 1")
	require.ErrorContains(t, c.Decode([]byte("\x01{"), &v), "x: decode record")
}

// Kinds is the one table of kind bytes: every Kind… constant of
// keyspace.go is in it, each lies in its owner's range, no two share a
// byte in the same space (global or per tenant), and FORMAT.md's
// "Every kind byte" table says the same.
func TestKindsTable(t *testing.T) {
	owners := map[string]storage.Owner{}
	for _, o := range storage.Owners {
		owners[o.Name] = o
	}
	type space struct {
		global bool
		b      byte
	}
	seen := map[space]string{}
	listed := map[byte]int{}
	var md strings.Builder
	md.WriteString("| kind | owner | tenant | holds |\n|---|---|---|---|\n")
	for _, k := range storage.Kinds {
		o, ok := owners[k.Owner]
		require.True(t, ok, "kind %#x: unknown owner %q", k.Byte, k.Owner)
		require.True(t, k.Byte >= o.First && k.Byte <= o.Last, "kind %#x outside %s's range", k.Byte, o.Name)
		sp := space{k.Global, k.Byte}
		require.Empty(t, seen[sp], "kind %#x (global %v) listed twice", k.Byte, k.Global)
		seen[sp] = k.Holds
		listed[k.Byte]++
		who := "every tenant"
		if k.Global {
			who = "0 (global)"
		}
		fmt.Fprintf(&md, "| `%02x` | %s | %s | %s |\n", k.Byte, k.Owner, who, k.Holds)
	}

	// Every byte constant named Kind… in keyspace.go is listed.
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "keyspace.go", nil, 0)
	require.NoError(t, err)
	consts := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			for i, n := range sp.(*ast.ValueSpec).Names {
				if !strings.HasPrefix(n.Name, "Kind") || len(sp.(*ast.ValueSpec).Values) <= i {
					continue
				}
				lit, ok := sp.(*ast.ValueSpec).Values[i].(*ast.BasicLit)
				require.True(t, ok, "%s is not a literal", n.Name)
				v, err := strconv.ParseUint(lit.Value, 0, 8)
				require.NoError(t, err)
				consts++
				require.NotZero(t, listed[byte(v)], "%s (%s) is not in storage.Kinds", n.Name, lit.Value)
			}
		}
	}
	require.Equal(t, len(storage.Kinds), consts, "storage.Kinds and the Kind… constants differ in number")

	doc, err := os.ReadFile("FORMAT.md")
	require.NoError(t, err)
	require.Contains(t, string(doc), md.String(),
		"FORMAT.md's \"Every kind byte\" table differs from storage.Kinds; it should read:\n%s", md.String())
}
