package storage

import (
	"context"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/index"
)

// memPostings is Prometheus' index.MemPostings (tsdb/index/postings.go,
// v0.316; Apache 2.0) with 32-bit ids: its lists hold every series once
// per label pair and once in the list of all, ~8 entries a series, and
// 4-byte entries take ~35 bytes less per series than SeriesRef's 8. The
// tenant's index ids are dense from 1 and given anew at each start
// (tenantHead.index), so 32 bits hold them unless a process indexes more
// than 4,294,967,295 series between restarts. Lists are always ordered:
// ids are added in increasing order.
type memPostings struct {
	mtx sync.RWMutex
	// m holds the list of each label pair, by name and value. A list is
	// only ever appended to (under mtx) or replaced, so a reader may keep
	// one after releasing the lock.
	m map[string]map[string][]uint32
	// lvs holds the values of each name, an append-only list of m[name]'s
	// keys.
	lvs map[string][]string
}

var allPostingsKey = labels.Label{}

func newMemPostings() *memPostings {
	return &memPostings{
		m:   make(map[string]map[string][]uint32, 512),
		lvs: make(map[string][]string, 512),
	}
}

// Symbols returns an iterator over all unique name and value strings, in
// order.
func (p *memPostings) Symbols() index.StringIter {
	p.mtx.RLock()
	lvs := maps.Clone(p.lvs)
	p.mtx.RUnlock()
	symbols := make(map[string]struct{}, 512)
	for n, values := range lvs {
		symbols[n] = struct{}{}
		for _, v := range values {
			symbols[v] = struct{}{}
		}
	}
	res := make([]string, 0, len(symbols))
	for k := range symbols {
		res = append(res, k)
	}
	slices.Sort(res)
	return index.NewStringListIter(res)
}

// LabelNames returns all the unique label names.
func (p *memPostings) LabelNames() []string {
	p.mtx.RLock()
	defer p.mtx.RUnlock()
	n := len(p.m)
	if n == 0 {
		return nil
	}
	names := make([]string, 0, n-1)
	for name := range p.m {
		if name != allPostingsKey.Name {
			names = append(names, name)
		}
	}
	return names
}

// LabelValues returns the values of a label name.
func (p *memPostings) LabelValues(_ context.Context, name string, hints *storage.LabelHints) []string {
	p.mtx.RLock()
	values := p.lvs[name]
	p.mtx.RUnlock()
	values, allocated := hints.ApplyLimit(values)
	if allocated {
		return values
	}
	return slices.Clone(values)
}

// Stats calculates cardinality statistics, as MemPostings.Stats.
func (p *memPostings) Stats(label string, limit int, labelSizeFunc func(string, string, uint64) uint64) *index.PostingsStats {
	var size uint64
	p.mtx.RLock()
	metrics, names, valueLength, pairs := newTopStats(limit), newTopStats(limit), newTopStats(limit), newTopStats(limit)
	numLabelPairs := 0
	for n, e := range p.m {
		if n == "" {
			continue
		}
		names.push(index.Stat{Name: n, Count: uint64(len(e))})
		numLabelPairs += len(e)
		size = 0
		for name, values := range e {
			if n == label {
				metrics.push(index.Stat{Name: name, Count: uint64(len(values))})
			}
			seriesCnt := uint64(len(values))
			pairs.push(index.Stat{Name: n + "=" + name, Count: seriesCnt})
			size += labelSizeFunc(n, name, seriesCnt)
		}
		valueLength.push(index.Stat{Name: n, Count: size})
	}
	p.mtx.RUnlock()
	return &index.PostingsStats{
		CardinalityMetricsStats: metrics.get(),
		CardinalityLabelStats:   names.get(),
		LabelValueStats:         valueLength.get(),
		LabelValuePairsStats:    pairs.get(),
		NumLabelPairs:           numLabelPairs,
	}
}

// topStats is Prometheus' maxHeap (tsdb/index/postingsstats.go): the
// limit largest counts.
type topStats struct {
	maxLength int
	minValue  uint64
	minIndex  int
	items     []index.Stat
}

func newTopStats(limit int) *topStats {
	return &topStats{maxLength: limit, minValue: math.MaxUint64, items: make([]index.Stat, 0, limit)}
}

func (m *topStats) push(item index.Stat) {
	if len(m.items) < m.maxLength {
		if item.Count < m.minValue {
			m.minValue = item.Count
			m.minIndex = len(m.items)
		}
		m.items = append(m.items, item)
		return
	}
	if item.Count < m.minValue {
		return
	}
	m.items[m.minIndex] = item
	m.minValue = item.Count
	for i, stat := range m.items {
		if stat.Count < m.minValue {
			m.minValue = stat.Count
			m.minIndex = i
		}
	}
}

func (m *topStats) get() []index.Stat {
	slices.SortFunc(m.items, func(a, b index.Stat) int {
		switch {
		case b.Count < a.Count:
			return -1
		case b.Count > a.Count:
			return 1
		default:
			return 0
		}
	})
	return m.items
}

// Delete removes the ids in deleted from the lists of the affected labels
// and from the list of all.
func (p *memPostings) Delete(deleted map[storage.SeriesRef]struct{}, affected map[labels.Label]struct{}) {
	p.mtx.Lock()
	defer p.mtx.Unlock()
	affectedNames := map[string]struct{}{}
	process := func(l labels.Label) {
		orig := p.m[l.Name][l.Value]
		repl := make([]uint32, 0, len(orig))
		for _, id := range orig {
			if _, ok := deleted[storage.SeriesRef(id)]; !ok {
				repl = append(repl, id)
			}
		}
		if len(repl) > 0 {
			p.m[l.Name][l.Value] = repl
		} else {
			delete(p.m[l.Name], l.Value)
			affectedNames[l.Name] = struct{}{}
		}
	}
	i := 0
	for l := range affected {
		i++
		process(l)
		if i%512 == 0 {
			p.unlockWaitAndLockAgain()
		}
	}
	process(allPostingsKey)
	i = 0
	for name := range affectedNames {
		i++
		if i%512 == 0 {
			p.unlockWaitAndLockAgain()
		}
		if len(p.m[name]) == 0 {
			delete(p.m, name)
			delete(p.lvs, name)
			continue
		}
		lvs := make([]string, 0, 2*len(p.m[name]))
		for v := range p.m[name] {
			lvs = append(lvs, v)
		}
		p.lvs[name] = lvs
	}
}

// unlockWaitAndLockAgain lets readers waiting for the lock in.
func (p *memPostings) unlockWaitAndLockAgain() {
	p.mtx.Unlock()
	p.mtx.RLock()
	p.mtx.RUnlock() //nolint:staticcheck // SA2001: an intentionally empty critical section.
	time.Sleep(time.Millisecond)
	p.mtx.Lock()
}

// Add adds id to the lists of lset's pairs and to the list of all.
func (p *memPostings) Add(id uint32, lset labels.Labels) {
	p.mtx.Lock()
	lset.Range(func(l labels.Label) {
		p.addFor(id, l)
	})
	p.addFor(id, allPostingsKey)
	p.mtx.Unlock()
}

// addLabels adds id to the lists of ls's pairs and to the list of all.
// The lists' keys for new pairs are ls's strings.
func (p *memPostings) addLabels(id uint32, ls []labels.Label) {
	p.mtx.Lock()
	for _, l := range ls {
		p.addFor(id, l)
	}
	p.addFor(id, allPostingsKey)
	p.mtx.Unlock()
}

func appendGrowing[T any](a []T, v T) []T {
	if cap(a) < len(a)+1 {
		grown := make([]T, len(a), len(a)*2+1)
		copy(grown, a)
		a = grown
	}
	return append(a, v)
}

func (p *memPostings) addFor(id uint32, l labels.Label) {
	nm, ok := p.m[l.Name]
	if !ok {
		nm = map[string][]uint32{}
		p.m[l.Name] = nm
	}
	vm, ok := nm[l.Value]
	if !ok {
		p.lvs[l.Name] = appendGrowing(p.lvs[l.Name], l.Value)
	}
	list := appendGrowing(vm, id)
	nm[l.Value] = list
	// Ids come in increasing order (tenantHead.index); repair one that
	// does not, as MemPostings does.
	for i := len(list) - 1; i >= 1; i-- {
		if list[i] >= list[i-1] {
			break
		}
		list[i], list[i-1] = list[i-1], list[i]
	}
}

// PostingsForLabelMatching returns the ids of the series with a value of
// name that match accepts.
func (p *memPostings) PostingsForLabelMatching(ctx context.Context, name string, match func(string) bool) index.Postings {
	p.mtx.RLock()
	readOnly := p.lvs[name]
	p.mtx.RUnlock()
	vals := make([]string, 0, len(readOnly))
	for i, v := range readOnly {
		if i%128 == 0 && ctx.Err() != nil {
			return index.ErrPostings(ctx.Err())
		}
		if match(v) {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return index.EmptyPostings()
	}
	its := make([]*list32Postings, 0, len(vals))
	lps := make([]list32Postings, len(vals))
	p.mtx.RLock()
	e := p.m[name]
	for i, v := range vals {
		if refs, ok := e[v]; ok {
			lps[i] = list32Postings{list: refs}
			its = append(its, &lps[i])
		}
	}
	p.mtx.RUnlock()
	return index.Merge(ctx, its...)
}

// Postings returns the ids of the series with one of the values of name.
func (p *memPostings) Postings(ctx context.Context, name string, values ...string) index.Postings {
	if len(values) == 1 {
		// A matcher's one value (name="value"): its list alone, one
		// allocation instead of Merge's slices.
		p.mtx.RLock()
		lp := p.m[name][values[0]]
		p.mtx.RUnlock()
		if lp == nil {
			return index.EmptyPostings()
		}
		return &list32Postings{list: lp}
	}
	res := make([]*list32Postings, 0, len(values))
	lps := make([]list32Postings, len(values))
	p.mtx.RLock()
	byValue := p.m[name]
	for i, value := range values {
		if lp := byValue[value]; lp != nil {
			lps[i] = list32Postings{list: lp}
			res = append(res, &lps[i])
		}
	}
	p.mtx.RUnlock()
	return index.Merge(ctx, res...)
}

// PostingsForAllLabelValues returns the ids of the series that have name.
func (p *memPostings) PostingsForAllLabelValues(ctx context.Context, name string) index.Postings {
	p.mtx.RLock()
	e := p.m[name]
	its := make([]*list32Postings, 0, len(e))
	lps := make([]list32Postings, len(e))
	i := 0
	for _, refs := range e {
		if len(refs) > 0 {
			lps[i] = list32Postings{list: refs}
			its = append(its, &lps[i])
		}
		i++
	}
	p.mtx.RUnlock()
	return index.Merge(ctx, its...)
}

// list32Postings is Prometheus' listPostings over 32-bit ids.
type list32Postings struct {
	list []uint32
	cur  storage.SeriesRef
}

func (it *list32Postings) At() storage.SeriesRef { return it.cur }

func (it *list32Postings) Next() bool {
	if len(it.list) > 0 {
		it.cur = storage.SeriesRef(it.list[0])
		it.list = it.list[1:]
		return true
	}
	it.cur = 0
	return false
}

func (it *list32Postings) Seek(x storage.SeriesRef) bool {
	if it.cur >= x {
		return true
	}
	if len(it.list) == 0 {
		return false
	}
	if x > math.MaxUint32 {
		it.list = nil
		return false
	}
	i := 0
	if storage.SeriesRef(it.list[0]) < x {
		i, _ = slices.BinarySearch(it.list, uint32(x))
		if i >= len(it.list) {
			it.list = nil
			return false
		}
	}
	it.cur = storage.SeriesRef(it.list[i])
	it.list = it.list[i+1:]
	return true
}

func (*list32Postings) Err() error { return nil }

// Len returns the remaining number of postings in the list.
func (it *list32Postings) Len() int { return len(it.list) }
