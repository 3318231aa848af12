package storage_test

import (
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
