package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/index"

	"github.com/levitated/levitated/pkg/tenant"
)

// tenantHead is the in-memory state of one tenant: its series, their
// inverted index and the time range of its samples.
type tenantHead struct {
	id   uint32
	name string

	mu       sync.RWMutex
	byHash   map[uint64][]*memSeries
	byRef    map[uint64]*memSeries
	postings *index.MemPostings

	minT, maxT atomic.Int64 // math.MaxInt64 / math.MinInt64 when empty

	metaMu   sync.Mutex
	metadata map[string][]metadata.Metadata
}

func newTenantHead(id uint32, name string) *tenantHead {
	th := &tenantHead{
		id:       id,
		name:     name,
		byHash:   map[uint64][]*memSeries{},
		byRef:    map[uint64]*memSeries{},
		postings: index.NewMemPostings(),
		metadata: map[string][]metadata.Metadata{},
	}
	th.minT.Store(math.MaxInt64)
	th.maxT.Store(math.MinInt64)
	return th
}

func (th *tenantHead) get(lset labels.Labels, hash uint64) *memSeries {
	th.mu.RLock()
	defer th.mu.RUnlock()
	for _, s := range th.byHash[hash] {
		if labels.Equal(s.lset, lset) {
			return s
		}
	}
	return nil
}

func (th *tenantHead) getByRef(ref uint64) *memSeries {
	th.mu.RLock()
	defer th.mu.RUnlock()
	return th.byRef[ref]
}

// getOrCreate returns the series of lset, creating it (not yet durable nor
// indexed) if needed. newRef is called under the tenant's lock.
func (th *tenantHead) getOrCreate(lset labels.Labels, newRef func() uint64) *memSeries {
	hash := lset.Hash()
	if s := th.get(lset, hash); s != nil {
		return s
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	for _, s := range th.byHash[hash] {
		if labels.Equal(s.lset, lset) {
			return s
		}
	}
	s := newMemSeries(newRef(), lset.Copy(), hash)
	th.byHash[hash] = append(th.byHash[hash], s)
	th.byRef[s.ref] = s
	return s
}

// addLoaded inserts a series read back from Pebble at open.
func (th *tenantHead) addLoaded(s *memSeries) {
	th.byHash[s.hash] = append(th.byHash[s.hash], s)
	th.byRef[s.ref] = s
	th.postings.Add(storage.SeriesRef(s.ref), s.lset)
	s.indexed = true
}

// index makes committed series visible to queries.
func (th *tenantHead) index(ss []*memSeries) {
	for _, s := range ss {
		s.mu.Lock()
		already := s.indexed
		s.indexed = true
		s.mu.Unlock()
		if !already {
			th.postings.Add(storage.SeriesRef(s.ref), s.lset)
		}
	}
}

// remove drops series from the maps and the index.
func (th *tenantHead) remove(ss []*memSeries) {
	if len(ss) == 0 {
		return
	}
	deleted := make(map[storage.SeriesRef]struct{}, len(ss))
	affected := map[labels.Label]struct{}{}
	th.mu.Lock()
	for _, s := range ss {
		deleted[storage.SeriesRef(s.ref)] = struct{}{}
		s.lset.Range(func(l labels.Label) { affected[l] = struct{}{} })
		delete(th.byRef, s.ref)
		list := th.byHash[s.hash]
		for i, o := range list {
			if o == s {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(th.byHash, s.hash)
		} else {
			th.byHash[s.hash] = list
		}
	}
	th.mu.Unlock()
	th.postings.Delete(deleted, affected)
}

func (th *tenantHead) seriesSnapshot() []*memSeries {
	th.mu.RLock()
	defer th.mu.RUnlock()
	out := make([]*memSeries, 0, len(th.byRef))
	for _, s := range th.byRef {
		out = append(out, s)
	}
	return out
}

func (th *tenantHead) numSeries() int {
	th.mu.RLock()
	defer th.mu.RUnlock()
	return len(th.byRef)
}

func (th *tenantHead) observeTime(t int64) {
	for {
		cur := th.maxT.Load()
		if t <= cur || th.maxT.CompareAndSwap(cur, t) {
			break
		}
	}
	for {
		cur := th.minT.Load()
		if t >= cur || th.minT.CompareAndSwap(cur, t) {
			break
		}
	}
}

// tenantFor returns the head of the tenant in ctx, or nil if it has never
// written anything (reads then see no data).
func (db *DB) tenantFor(ctx context.Context) *tenantHead {
	name := tenant.FromContext(ctx)
	db.tenantsMu.RLock()
	defer db.tenantsMu.RUnlock()
	return db.tenants[name]
}

// tenantForWrite returns the head of the tenant in ctx, registering the
// tenant durably on first use.
func (db *DB) tenantForWrite(ctx context.Context) (*tenantHead, error) {
	name := tenant.FromContext(ctx)
	db.tenantsMu.RLock()
	th := db.tenants[name]
	db.tenantsMu.RUnlock()
	if th != nil {
		return th, nil
	}
	if err := tenant.Validate(name); err != nil {
		return nil, err
	}
	db.tenantsMu.Lock()
	defer db.tenantsMu.Unlock()
	if th := db.tenants[name]; th != nil {
		return th, nil
	}
	if db.nextTenantID == math.MaxUint32 {
		return nil, fmt.Errorf("register tenant %q: tenant ids exhausted", name)
	}
	id := db.nextTenantID
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], id)
	if err := db.pdb.Set(globalKey(globalTenantName, name), v[:], pebble.Sync); err != nil {
		return nil, fmt.Errorf("register tenant %q: %w", name, err)
	}
	db.nextTenantID++
	th = newTenantHead(id, name)
	db.tenants[name] = th
	db.tenantsByID[id] = th
	return th, nil
}

// TenantID returns the stable numeric id of a tenant, registering it on
// first use. Packages that share the Pebble database prefix their keys with
// it (see TenantPrefix).
func (db *DB) TenantID(ctx context.Context, name string) (uint32, error) {
	th, err := db.tenantForWrite(tenant.NewContext(ctx, name))
	if err != nil {
		return 0, err
	}
	return th.id, nil
}

func (db *DB) tenantHeads() []*tenantHead {
	db.tenantsMu.RLock()
	defer db.tenantsMu.RUnlock()
	out := make([]*tenantHead, 0, len(db.tenants))
	for _, th := range db.tenants {
		out = append(out, th)
	}
	return out
}
