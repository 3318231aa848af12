package storage

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestChunkIterSeeks: chunkIter.seekGE lands where Pebble's SeekGE does,
// for targets forward (stepping), backward and far ahead (seeking), in
// any mix with next; reading keys in order mostly steps.
func TestChunkIterSeeks(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	defer db.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	key := func(v uint64) []byte { return binary.BigEndian.AppendUint64([]byte("k"), v) }
	var keys [][]byte
	b := db.NewBatch()
	for v := uint64(0); v < 5000; v += 1 + rng.Uint64N(3) {
		keys = append(keys, key(v))
		require.NoError(t, b.Set(key(v), nil, nil))
	}
	require.NoError(t, b.Commit(nil))
	require.NoError(t, db.Flush())
	want := func(k []byte) []byte {
		i, _ := slices.BinarySearchFunc(keys, k, bytes.Compare)
		if i == len(keys) {
			return nil
		}
		return keys[i]
	}
	pit, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("k"), UpperBound: []byte("l")})
	require.NoError(t, err)
	it := &chunkIter{it: pit}
	defer it.Close()
	check := func(target []byte) {
		t.Helper()
		ok := it.seekGE(target)
		w := want(target)
		require.Equal(t, w != nil, ok, "seekGE %x", target)
		if ok {
			require.Equal(t, w, it.Key(), "seekGE %x", target)
		}
	}
	for range 20000 {
		switch r := rng.IntN(10); {
		case r < 5: // a little ahead
			var cur uint64
			if it.Valid() {
				cur = binary.BigEndian.Uint64(it.Key()[1:])
			}
			check(key(cur + rng.Uint64N(12)))
		case r < 7: // anywhere
			check(key(rng.Uint64N(5100)))
		case r < 8: // the key just stepped over
			if it.Valid() {
				k := slices.Clone(it.Key())
				it.next()
				check(k)
			}
		default:
			if it.Valid() {
				k := slices.Clone(it.Key())
				ok := it.next()
				i, _ := slices.BinarySearchFunc(keys, k, bytes.Compare)
				require.Equal(t, i+1 < len(keys), ok)
				if ok {
					require.Equal(t, keys[i+1], it.Key())
				}
			}
		}
	}
	// In order, a few keys apart: steps, not seeks.
	it.seeks = 0
	n := 0
	for v := uint64(0); v < 5000; v += 5 {
		check(key(v))
		n++
	}
	require.Less(t, it.seeks, n/10, "seeks reading in order")
}

// TestChunkIterSeeksFarSeries: over chunk keys, a series more than maxSteps
// series ahead is sought at once (no steps lost), a nearer one stepped to,
// and either lands where Pebble's SeekGE does.
func TestChunkIterSeeksFarSeries(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	defer db.Close()
	const day = 20000
	t0 := int64(day) * dayMillis
	var keys [][]byte
	b := db.NewBatch()
	for sid := uint64(1); sid <= 2000; sid++ {
		for c := range int64(3) { // three chunks a series
			k := chunkKey(7, sid, t0+c*chunkRange, 0)
			keys = append(keys, k)
			require.NoError(t, b.Set(k, nil, nil))
		}
	}
	require.NoError(t, b.Commit(nil))
	require.NoError(t, db.Flush())
	p := chunkDayPrefix(7, day)
	pit, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)})
	require.NoError(t, err)
	it := &chunkIter{it: pit}
	defer it.Close()
	seek := func(sid uint64, minT int64) {
		t.Helper()
		target := chunkKey(7, sid, minT, 0)
		require.True(t, it.seekGE(target))
		i, _ := slices.BinarySearchFunc(keys, target, bytes.Compare)
		require.Equal(t, keys[i], it.Key())
	}
	// One series in 50, as a metric with a series per instance: a seek
	// each, no steps.
	seek(1, t0)
	it.seeks, it.steps = 0, 0
	for sid := uint64(51); sid <= 2000; sid += 50 {
		seek(sid, t0+chunkRange) // the series' second chunk
	}
	require.Equal(t, 39, it.seeks)
	require.Zero(t, it.steps)
	// Every third series, from its first chunk: steps, no seeks.
	seek(3, t0)
	it.seeks, it.steps = 0, 0
	for sid := uint64(6); sid <= 300; sid += 3 {
		seek(sid, t0)
	}
	require.Zero(t, it.seeks)
	require.Equal(t, 99*9, it.steps)
}
