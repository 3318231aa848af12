package storage

import (
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// iterPool keeps, for each partition (tenant and day), the Pebble iterator
// over its chunks that the last reader closed, for the next reader of that
// partition: making one (NewIter, its levels' files opened at the first
// seek) and closing it were a twentieth of a one-series range query's CPU
// at 100k series.
//
// An iterator reads the database as it was when it was made. A reader may
// take one made before it only if no chunk was written or deleted since:
// every commit that writes or deletes chunk keys (checkpoints, spills,
// retention) calls invalidate once it has committed, before the chunks it
// wrote can leave memory (readerEpochs.advance comes after), and pooled
// iterators are tagged with the generation they were made in. A reader
// that took one before such a commit holds an epoch older than the one the
// commit's chunks become droppable from, so memory still has them for it,
// as for a reader whose iterator was made just before the commit.
//
// A pooled iterator also pins the memtables and files of its time, so
// Pebble's flushes and compactions make the pool's iterators stale too
// (stale), and they are closed then.
type iterPool struct {
	gen    atomic.Uint64
	mu     sync.Mutex
	closed bool
	idle   map[iterPoolKey]pooledIter

	// made and reused count the iterators readers used
	// (levitated_storage_chunk_iterators_total).
	made, reused atomic.Int64
}

type iterPoolKey struct {
	tid uint32
	day int32
}

type pooledIter struct {
	it  *pebble.Iterator
	gen uint64
}

// get returns the pooled iterator of k if it is of the current
// generation, or nil; and the generation a new iterator made now is of.
// The generation is read before the caller makes one, so an iterator made
// during a commit is taken for one made before it.
func (p *iterPool) get(k iterPoolKey) (*pebble.Iterator, uint64) {
	gen := p.gen.Load()
	p.mu.Lock()
	e, ok := p.idle[k]
	if ok {
		delete(p.idle, k)
	}
	p.mu.Unlock()
	if ok && e.gen == gen {
		p.reused.Add(1)
		return e.it, gen
	}
	if ok {
		_ = e.it.Close()
	}
	p.made.Add(1)
	return nil, gen
}

// put gives back a reader's iterator of k, made in generation gen: it is
// kept if it is still current and k has none, and closed otherwise.
func (p *iterPool) put(k iterPoolKey, it *pebble.Iterator, gen uint64) error {
	if it.Error() == nil {
		p.mu.Lock()
		// The generation is compared under the lock: invalidate moves it
		// before it drains, so an iterator kept here after a move is
		// closed by that drain.
		if _, taken := p.idle[k]; !taken && !p.closed && gen == p.gen.Load() {
			if p.idle == nil {
				p.idle = map[iterPoolKey]pooledIter{}
			}
			p.idle[k] = pooledIter{it: it, gen: gen}
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
	}
	return it.Close()
}

// invalidate makes every pooled iterator stale and closes them: chunks
// were written or deleted.
func (p *iterPool) invalidate() {
	p.gen.Add(1)
	p.drain()
}

// stale makes the pooled iterators stale, from Pebble's event listener
// (a flush or a compaction ended: they pin what it replaced). It does not
// close them there — Pebble may hold its own locks — but on a goroutine
// of its own.
func (p *iterPool) stale() {
	p.gen.Add(1)
	go p.drain()
}

// drain closes the idle iterators. It holds the lock while it closes them,
// so that close, which runs before Pebble's, returns with none open.
func (p *iterPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.idle {
		_ = e.it.Close()
		delete(p.idle, k)
	}
}

// close closes the idle iterators and keeps no more.
func (p *iterPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.drain()
}
