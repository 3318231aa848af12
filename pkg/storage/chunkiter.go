package storage

import (
	"bytes"
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
)

// chunkIter is a reader's Pebble iterator over one partition's chunks that
// seeks forward by stepping when it can: a reader reads the series of a
// select in the order of their keys, most often the next series' first
// chunk is the key the iterator stopped at, or a few keys after it, and
// Pebble's SeekGE (a binary search in every level's index and data
// blocks) costs several times a Next. Pebble skips a seek after a seek,
// not after a Next.
type chunkIter struct {
	it *pebble.Iterator
	// from is where the iterator's position came from: its key is the
	// first key >= from (fromIncl) or > from. Empty when unknown.
	from     []byte
	fromIncl bool
	// Seeks and steps, for tests.
	seeks, steps int
	// gen is the iterator's generation in the DB's pool (iterPool).
	gen uint64
}

// maxSteps is how many Nexts seekGE tries before it seeks.
const maxSteps = 16

// seekGE positions the iterator at the first key >= key.
func (c *chunkIter) seekGE(key []byte) bool {
	if len(c.from) > 0 && c.Valid() && !farAhead(c.Key(), key) {
		if cmp := bytes.Compare(c.from, key); cmp < 0 || (cmp == 0 && c.fromIncl) {
			// No key lies between from and the iterator's key.
			for range maxSteps {
				if bytes.Compare(c.Key(), key) >= 0 {
					return true
				}
				if !c.next() {
					break
				}
			}
		}
	}
	c.seeks++
	c.from, c.fromIncl = append(c.from[:0], key...), true
	if !c.it.SeekGE(key) {
		c.from = c.from[:0]
		return false
	}
	return true
}

// farAhead reports whether chunk key key is of a series more than
// maxSteps series after that of chunk key cur, in the same partition: a
// series in between has a chunk there (most have several), so stepping
// would not get there before seekGE gives up and seeks. A sparse select
// (one metric's series among those of every other metric: a series per
// instance, 1 in 50) then seeks at once instead of stepping maxSteps
// times first, a third of an instant max_over_time's CPU at 100k series.
func farAhead(cur, key []byte) bool {
	const sid = prefixLen + 4
	if len(cur) != chunkKeyLen || len(key) != chunkKeyLen || string(cur[:sid]) != string(key[:sid]) {
		return false
	}
	return binary.BigEndian.Uint64(key[sid:]) > binary.BigEndian.Uint64(cur[sid:])+maxSteps
}

// next moves to the next key.
func (c *chunkIter) next() bool {
	c.steps++
	if c.Valid() {
		c.from, c.fromIncl = append(c.from[:0], c.Key()...), false
	} else {
		c.from = c.from[:0]
	}
	if !c.it.Next() {
		c.from = c.from[:0]
		return false
	}
	return true
}

func (c *chunkIter) Valid() bool   { return c.it.Valid() }
func (c *chunkIter) Key() []byte   { return c.it.Key() }
func (c *chunkIter) Value() []byte { return c.it.Value() }
func (c *chunkIter) Error() error  { return c.it.Error() }
func (c *chunkIter) Close() error  { return c.it.Close() }
