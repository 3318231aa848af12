// Package resultscache serves repeated PromQL range queries — a Grafana
// panel refreshed every 10–30 s — from the results of their earlier runs,
// invalidated exactly by the writes the store accepts.
//
// A cacheable range query (see analyze) is evaluated by Prometheus' engine
// in pieces of its steps: the steps a cached entry of the same query (same
// tenant, expression, step, phase of the step grid and lookback delta)
// still holds are served from it, the others — usually a short tail of new
// steps — are evaluated, and the merged result becomes the entry. Because
// the value of such a query at each step depends only on that step and the
// data, the merged result is the one the engine would give for the whole
// range, bit for bit.
//
// Invalidation is exact rather than by age. Each evaluation records the
// time range it read from the store (the queriers the engine opened), so
// each step of an entry is known to read at most [step-before,
// step+after]. The store tells the cache of every change it makes visible
// (SamplesChanged: samples appended, out of order or not; data deleted by
// retention) and the event store of every event written or deleted
// (EventsChanged); the cache then drops exactly the steps whose reads the
// change touches, or the whole entry for queries that do not read at a
// fixed distance from their steps (pinned). A change during an evaluation
// applies to the entry it produces, so an entry never holds a step older
// than the data.
package resultscache

import (
	"container/list"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/annotations"
)

// Options configure a Cache.
type Options struct {
	// MaxBytes bounds the memory the cached results take (an estimate:
	// 16 bytes a float point, the labels, a histogram's buckets); the least
	// recently used entries go first. 0 disables the cache.
	MaxBytes int64
	// Parser parses queries for the analysis; it must accept what the
	// engine accepts.
	Parser parser.Parser
	// EventFunctions are the functions that read change events.
	EventFunctions []string
	// EventMetrics are the metric names of the series served from events.
	EventMetrics []string
	// Now is the clock of the event store (whose open windows last until
	// now). Nil means time.Now.
	Now func() time.Time
	// Registerer receives the cache's metrics; may be nil.
	Registerer prometheus.Registerer
}

// Cache is a results cache for range queries. It is safe for concurrent
// use. A nil *Cache caches nothing.
type Cache struct {
	opts         Options
	eventFuncs   map[string]bool
	eventMetrics map[string]bool

	mu      sync.Mutex
	tenants map[string]*tenantState
	lru     list.List // of *entry, most recently used at the front
	bytes   int64

	m metrics
}

type tenantState struct {
	entries map[string]*entry
	pending map[*pending]struct{}
}

// pending is an evaluation in flight: the changes made while it runs.
type pending struct {
	written    bool
	wmin, wmax int64 // hull of the sample changes
	events     bool
}

func (p *pending) add(mint, maxt int64) {
	if !p.written {
		p.written, p.wmin, p.wmax = true, mint, maxt
		return
	}
	p.wmin, p.wmax = min(p.wmin, mint), max(p.wmax, maxt)
}

// entry is the cached result of one query at the steps from..to.
type entry struct {
	tenant, key string
	step        int64
	from, to    int64 // the steps the matrix covers (ms, inclusive)
	// validFrom..validTo are the steps still valid (empty when
	// validFrom > validTo).
	validFrom, validTo int64
	// Each step s read at most [s-before, s+after]; all steps together
	// read [lo, hi]. reads is false when the evaluation read nothing.
	before, after int64
	lo, hi        int64
	reads         bool
	plan          plan
	mat           promql.Matrix
	warnings      annotations.Annotations // of the whole evaluation
	size          int64
	elem          *list.Element
}

// New returns a cache, or nil if opts.MaxBytes is 0.
func New(opts Options) *Cache {
	if opts.MaxBytes <= 0 {
		return nil
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Cache{opts: opts, eventFuncs: map[string]bool{}, eventMetrics: map[string]bool{}, tenants: map[string]*tenantState{}}
	for _, f := range opts.EventFunctions {
		c.eventFuncs[f] = true
	}
	for _, m := range opts.EventMetrics {
		c.eventMetrics[m] = true
	}
	c.m = newMetrics(opts.Registerer)
	return c
}

func (c *Cache) tenant(name string) *tenantState {
	ts := c.tenants[name]
	if ts == nil {
		ts = &tenantState{entries: map[string]*entry{}, pending: map[*pending]struct{}{}}
		c.tenants[name] = ts
	}
	return ts
}

// SamplesChanged tells the cache that tenant's samples in [mint, maxt]
// changed (appended, or deleted). Call it once the change is visible to
// queriers, for every change.
func (c *Cache) SamplesChanged(tenant string, mint, maxt int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tenants[tenant]
	if ts == nil {
		return
	}
	for p := range ts.pending {
		p.add(mint, maxt)
	}
	for _, e := range ts.entries {
		if !e.apply(mint, maxt) {
			c.removeLocked(e)
			c.m.invalidated.Inc()
		}
	}
}

// EventsChanged tells the cache that tenant's change events changed.
func (c *Cache) EventsChanged(tenant string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tenants[tenant]
	if ts == nil {
		return
	}
	for p := range ts.pending {
		p.events = true
	}
	for _, e := range ts.entries {
		if e.plan.readsEvents {
			c.removeLocked(e)
			c.m.invalidated.Inc()
		}
	}
}

// apply narrows the valid steps of e after a change of the samples in
// [wmin, wmax]; it returns false if none is left.
func (e *entry) apply(wmin, wmax int64) bool {
	if !e.reads || wmax < e.lo || wmin > e.hi {
		return true
	}
	if e.plan.pinned {
		return false
	}
	// Steps s with [s-before, s+after] ∩ [wmin, wmax] ≠ ∅.
	first, last := subSat(wmin, e.after), addSat(wmax, e.before)
	if last < e.validFrom || first > e.validTo {
		return true
	}
	if first > e.validFrom {
		// Keep the steps before the change.
		e.validTo = e.stepAtOrBefore(first - 1)
	} else {
		// Keep the steps after it.
		e.validFrom = e.stepAtOrAfter(addSat(last, 1))
	}
	return e.validFrom <= e.validTo
}

func (e *entry) stepAtOrBefore(t int64) int64 {
	if t < e.from {
		return math.MinInt64
	}
	return e.from + (t-e.from)/e.step*e.step
}

func (e *entry) stepAtOrAfter(t int64) int64 {
	if t <= e.from {
		return e.from
	}
	if t > e.to {
		return math.MaxInt64
	}
	return e.from + (t-e.from+e.step-1)/e.step*e.step
}

func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	if b < 0 && a < math.MinInt64-b {
		return math.MinInt64
	}
	return a + b
}

func subSat(a, b int64) int64 {
	if b == math.MinInt64 {
		return addSat(addSat(a, math.MaxInt64), 1)
	}
	return addSat(a, -b)
}

func (c *Cache) removeLocked(e *entry) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	c.bytes -= e.size
	if ts := c.tenants[e.tenant]; ts != nil && ts.entries[e.key] == e {
		delete(ts.entries, e.key)
		if len(ts.entries) == 0 && len(ts.pending) == 0 {
			delete(c.tenants, e.tenant)
		}
	}
	c.m.bytes.Set(float64(c.bytes))
	c.m.entries.Set(float64(c.lru.Len()))
}

// lookup returns the entry of key (nil if none) and registers an
// evaluation that is about to start; finish must follow.
func (c *Cache) lookup(tenant, key string) (*entry, valid, *pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tenant(tenant)
	p := &pending{}
	ts.pending[p] = struct{}{}
	e := ts.entries[key]
	var v valid
	if e != nil {
		c.lru.MoveToFront(e.elem)
		v = valid{e.validFrom, e.validTo}
	}
	return e, v, p
}

// valid is an entry's valid steps as lookup saw them: changes narrow them
// under c.mu (apply) while an evaluation reads the entry without it.
type valid struct{ from, to int64 }

// finish ends the evaluation p and stores e (if not nil) once the changes
// made while p ran are applied to it.
func (c *Cache) finish(tenant string, p *pending, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.tenant(tenant)
	delete(ts.pending, p)
	defer func() {
		if ts := c.tenants[tenant]; ts != nil && len(ts.entries) == 0 && len(ts.pending) == 0 {
			delete(c.tenants, tenant)
		}
	}()
	if e == nil || e.size > c.opts.MaxBytes/4 {
		return
	}
	if p.events && e.plan.readsEvents {
		return
	}
	if p.written && !e.apply(p.wmin, p.wmax) {
		return
	}
	if old := ts.entries[e.key]; old != nil {
		c.removeLocked(old)
		ts = c.tenant(tenant) // the removal may have dropped the tenant's state
	}
	ts.entries[e.key] = e
	e.elem = c.lru.PushFront(e)
	c.bytes += e.size
	for c.bytes > c.opts.MaxBytes {
		last := c.lru.Back().Value.(*entry)
		c.removeLocked(last)
		c.m.evicted.Inc()
	}
	c.m.bytes.Set(float64(c.bytes))
	c.m.entries.Set(float64(c.lru.Len()))
}

// Stats is what the cache did so far.
type Stats struct {
	// StepsCached and StepsEvaluated count the steps of cacheable range
	// queries served from the cache and evaluated.
	StepsCached, StepsEvaluated int64
	// Queries counts range queries by what the cache did: "uncacheable",
	// "miss" (nothing cached was used), "partial", "hit" (nothing
	// evaluated), "fallback" (a piece failed; the whole query ran
	// uncached).
	Queries map[string]int64
	// Entries and Bytes are what the cache holds now.
	Entries int
	Bytes   int64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{StepsCached: c.m.stepsCachedN, StepsEvaluated: c.m.stepsEvaluatedN, Queries: map[string]int64{}, Entries: c.lru.Len(), Bytes: c.bytes}
	for k, v := range c.m.queriesN {
		s.Queries[k] = v
	}
	return s
}

// mergeAnnotations returns a ∪ b.
func mergeAnnotations(a, b annotations.Annotations) annotations.Annotations {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = annotations.Annotations{}
	}
	return a.Merge(b)
}
