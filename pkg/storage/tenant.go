package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/tenant"
)

// tenantHead is the in-memory state of one tenant: its series, their
// inverted index and the time range of its samples.
type tenantHead struct {
	id   uint32
	name string

	series seriesRegistry
	// symbols interns the labels of the tenant's series.
	symbols *symbolTable
	// postings is the inverted index. Its ids are not series references
	// but index ids, given out in the order series are indexed (under
	// idxMu): Prometheus' MemPostings repairs an id added out of order by
	// swapping it into place in a list that readers may be iterating, and
	// series, numbered when created, are indexed when their first commit
	// is durable, in another order. They are 32-bit (memPostings).
	postings *memPostings
	idxMu    sync.Mutex
	nextIdx  atomic.Uint64 // written under idxMu
	byIdx    refTable      // index id → series

	minT, maxT atomic.Int64 // math.MaxInt64 / math.MinInt64 when empty

	metaMu   sync.Mutex
	metadata map[string][]metadata.Metadata
}

func newTenantHead(id uint32, name string) *tenantHead {
	th := &tenantHead{
		id:       id,
		name:     name,
		symbols:  newSymbolTable(),
		postings: newMemPostings(),
		metadata: map[string][]metadata.Metadata{},
	}
	th.series.init(th.symbols)
	th.nextIdx.Store(1)
	th.byIdx.init()
	th.minT.Store(math.MaxInt64)
	th.maxT.Store(math.MinInt64)
	return th
}

// seriesRegistry finds a tenant's series by label hash (in lock stripes)
// and by reference (in a paged array read without locks). References are
// dense per tenant, starting at 1.
type seriesRegistry struct {
	syms    *symbolTable
	stripes [seriesStripes]hashStripe
	mu      sync.Mutex // guards growth of refs and nextRef
	refs    refTable
	nextRef uint64
	count   atomic.Int64
}

// refTable maps dense ids to series in a paged array read without locks;
// writers serialize set.
type refTable struct {
	pages atomic.Pointer[[]*seriesPage]
}

const (
	seriesStripes = 64
	pageBits      = 12
	pageSize      = 1 << pageBits
)

type seriesPage [pageSize]atomic.Pointer[memSeries]

// hashStripe maps label hashes to series: one series per hash in byHash
// (16 bytes a series; a map of slices took 32 and a slice's array), the
// others sharing a hash, which few ever do, in more.
type hashStripe struct {
	sync.RWMutex
	byHash map[uint64]*memSeries
	more   map[uint64][]*memSeries
}

// find returns the series of lset, comparing lset with the series'
// symbols (syms: their table). The caller holds the stripe's lock.
func (st *hashStripe) find(syms *symbolTable, lset labels.Labels, hash uint64) *memSeries {
	if s := st.byHash[hash]; s != nil && syms.equal(s.syms, lset) {
		return s
	}
	for _, s := range st.more[hash] {
		if syms.equal(s.syms, lset) {
			return s
		}
	}
	return nil
}

// put adds s, whose labels hash to hash. The caller holds the stripe's
// write lock.
func (st *hashStripe) put(s *memSeries, hash uint64) {
	if st.byHash[hash] == nil {
		st.byHash[hash] = s
		return
	}
	if st.more == nil {
		st.more = map[uint64][]*memSeries{}
	}
	st.more[hash] = append(st.more[hash], s)
}

// delete removes s, whose labels hash to hash, if it is there. The
// caller holds the write lock.
func (st *hashStripe) delete(s *memSeries, hash uint64) {
	list := st.more[hash]
	if st.byHash[hash] == s {
		if len(list) == 0 {
			delete(st.byHash, hash)
			return
		}
		st.byHash[hash], list = list[0], list[1:]
	} else {
		for i, o := range list {
			if o == s {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	}
	if len(list) == 0 {
		delete(st.more, hash)
	} else {
		st.more[hash] = list
	}
}

func (r *seriesRegistry) init(syms *symbolTable) {
	r.syms = syms
	for i := range r.stripes {
		r.stripes[i].byHash = map[uint64]*memSeries{}
	}
	r.refs.init()
	r.nextRef = 1
}

func (r *seriesRegistry) byRef(ref uint64) *memSeries { return r.refs.get(ref) }

// setRef stores s under its reference. The caller holds r.mu.
func (r *seriesRegistry) setRef(s *memSeries) { r.refs.set(s.ref, s) }

func (t *refTable) init() { t.pages.Store(&[]*seriesPage{}) }

func (t *refTable) get(id uint64) *memSeries {
	pages := *t.pages.Load()
	if i := id >> pageBits; i < uint64(len(pages)) {
		return pages[i][id&(pageSize-1)].Load()
	}
	return nil
}

// set stores s (or nil) under id. Callers serialize set.
func (t *refTable) set(id uint64, s *memSeries) {
	pages := *t.pages.Load()
	i := id >> pageBits
	if i >= uint64(len(pages)) {
		grown := make([]*seriesPage, i+1)
		copy(grown, pages)
		for j := len(pages); j < len(grown); j++ {
			grown[j] = new(seriesPage)
		}
		t.pages.Store(&grown)
		pages = grown
	}
	pages[i][id&(pageSize-1)].Store(s)
}

// clear removes s from id, if it is still there.
func (t *refTable) clear(id uint64, s *memSeries) {
	pages := *t.pages.Load()
	if i := id >> pageBits; i < uint64(len(pages)) {
		pages[i][id&(pageSize-1)].CompareAndSwap(s, nil)
	}
}

// snapshot returns the table's pages as of now: the series of ids set
// later in these pages show in them, those of ids beyond them do not.
func (t *refTable) snapshot() []*seriesPage { return *t.pages.Load() }

// each calls fn for every series in the table, in id order.
func (t *refTable) each(fn func(*memSeries)) {
	for _, p := range *t.pages.Load() {
		for i := range p {
			if s := p[i].Load(); s != nil {
				fn(s)
			}
		}
	}
}

func (r *seriesRegistry) get(lset labels.Labels, hash uint64) *memSeries {
	st := &r.stripes[hash%seriesStripes]
	st.RLock()
	defer st.RUnlock()
	return st.find(r.syms, lset, hash)
}

// getOrCreate returns the series of lset, creating it (neither durable nor
// indexed yet) if needed.
func (r *seriesRegistry) getOrCreate(lset labels.Labels, hash uint64) *memSeries {
	if s := r.get(lset, hash); s != nil {
		return s
	}
	st := &r.stripes[hash%seriesStripes]
	st.Lock()
	defer st.Unlock()
	if s := st.find(r.syms, lset, hash); s != nil {
		return s
	}
	r.mu.Lock()
	s := newMemSeries(r.nextRef, r.syms.intern(lset))
	r.nextRef++
	r.setRef(s)
	r.mu.Unlock()
	st.put(s, hash)
	r.count.Add(1)
	return s
}

// add inserts a series read back from Pebble at open, whose labels hash
// to hash.
func (r *seriesRegistry) add(s *memSeries, hash uint64) {
	st := &r.stripes[hash%seriesStripes]
	st.Lock()
	st.put(s, hash)
	st.Unlock()
	r.mu.Lock()
	r.setRef(s)
	r.nextRef = max(r.nextRef, s.ref+1)
	r.mu.Unlock()
	r.count.Add(1)
}

func (r *seriesRegistry) remove(s *memSeries) {
	hash := r.syms.labels(s.syms, nil).Hash()
	st := &r.stripes[hash%seriesStripes]
	st.Lock()
	st.delete(s, hash)
	st.Unlock()
	r.mu.Lock()
	r.refs.clear(s.ref, s)
	r.mu.Unlock()
	r.count.Add(-1)
}

// each calls fn for every series, in reference order.
func (r *seriesRegistry) each(fn func(*memSeries)) { r.refs.each(fn) }

func (th *tenantHead) get(lset labels.Labels, hash uint64) *memSeries {
	return th.series.get(lset, hash)
}

// seriesLabels builds the labels of a series of the tenant (an
// allocation: for a query's series and an error's message).
func (th *tenantHead) seriesLabels(s *memSeries) labels.Labels {
	return th.symbols.labels(s.syms, nil)
}

func (th *tenantHead) getByRef(ref uint64) *memSeries { return th.series.byRef(ref) }

// getByIdx returns the series of an index id, as postings list them.
func (th *tenantHead) getByIdx(idx uint64) *memSeries { return th.byIdx.get(idx) }

func (th *tenantHead) getOrCreate(lset labels.Labels) *memSeries {
	return th.series.getOrCreate(lset, lset.Hash())
}

// maxIndexIDs is how many index ids a tenant gives out before it refuses
// new series: ids are 32-bit and given anew at each start, and series
// created but not yet indexed (their first commit in flight) need theirs.
const maxIndexIDs = math.MaxUint32 - 1<<24

// ErrIndexIDsExhausted is returned for a new series once its tenant has
// indexed maxIndexIDs series since the process started.
var ErrIndexIDsExhausted = errors.New("the tenant's series index ids are exhausted (4.28 billion series indexed since the start); restart levitated to number them again")

// addLoaded inserts a series read back from Pebble at open, whose labels
// hash to hash.
func (th *tenantHead) addLoaded(s *memSeries, hash uint64) {
	th.series.add(s, hash)
	th.index([]*memSeries{s})
}

// index makes committed series visible to queries. Index ids are given
// out and added to the postings under one lock, so that every list only
// ever grows at its end.
func (th *tenantHead) index(ss []*memSeries) {
	var buf [16]labels.Label
	th.idxMu.Lock()
	defer th.idxMu.Unlock()
	for _, s := range ss {
		s.mu.Lock()
		if s.idx != 0 {
			s.mu.Unlock()
			continue
		}
		s.idx = uint32(th.nextIdx.Add(1) - 1) // below 2³² (maxIndexIDs)
		s.mu.Unlock()
		th.byIdx.set(uint64(s.idx), s)
		// The postings' keys are the table's strings, not a copy's.
		th.postings.addLabels(s.idx, th.symbols.pairs(buf[:0], s.syms))
	}
}

// remove drops series from the registry and the index, and their
// references to the tenant's symbols: the symbols no series holds any
// more are queued, and freed once sealed (symbolTable.seal) and every
// reader that may hold a removed series has finished.
func (th *tenantHead) remove(ss []*memSeries) {
	if len(ss) == 0 {
		return
	}
	deleted := make(map[storage.SeriesRef]struct{}, len(ss))
	affected := map[labels.Label]struct{}{}
	encs := make([]string, 0, len(ss))
	var buf [16]labels.Label
	th.idxMu.Lock()
	for _, s := range ss {
		s.mu.Lock()
		idx := s.idx
		s.mu.Unlock()
		if idx != 0 {
			deleted[storage.SeriesRef(idx)] = struct{}{}
			for _, l := range th.symbols.pairs(buf[:0], s.syms) {
				affected[l] = struct{}{}
			}
			th.byIdx.clear(uint64(idx), s)
		}
		th.series.remove(s)
		encs = append(encs, s.syms)
	}
	th.postings.Delete(deleted, affected)
	th.idxMu.Unlock()
	th.symbols.release(encs)
}

func (th *tenantHead) seriesSnapshot() []*memSeries {
	out := make([]*memSeries, 0, th.numSeries())
	th.series.each(func(s *memSeries) { out = append(out, s) })
	return out
}

func (th *tenantHead) numSeries() int { return int(th.series.count.Load()) }

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

// TenantNames returns the names of the tenants the store knows, sorted.
func (db *DB) TenantNames() []string {
	db.tenantsMu.RLock()
	out := make([]string, 0, len(db.tenants))
	for name := range db.tenants {
		out = append(out, name)
	}
	db.tenantsMu.RUnlock()
	slices.Sort(out)
	return out
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

// TenantName returns the name of the tenant whose id (TenantID) is id.
func (db *DB) TenantName(id uint32) (string, bool) {
	db.tenantsMu.RLock()
	defer db.tenantsMu.RUnlock()
	for name, th := range db.tenants {
		if th.id == id {
			return name, true
		}
	}
	return "", false
}
