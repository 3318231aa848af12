package limits

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/levitated/levitated/pkg/tenant"
)

// Options configure a Limiter.
type Options struct {
	// Defaults apply to every tenant the overrides file does not name,
	// and to the fields it does not set.
	Defaults Limits
	// OverridesFile is a YAML file of per-tenant limits; empty for none.
	// It is re-read when it changes (checked at most once per
	// ReloadInterval); a file that no longer loads keeps the last good one
	// in force and is logged.
	OverridesFile  string
	ReloadInterval time.Duration // default 10s, as Mimir's runtime config
	// MaxInflightWrites bounds the write requests (samples and events)
	// being served at once, across tenants; more get 503 with
	// Retry-After. Zero means unlimited.
	MaxInflightWrites int
	// MaxInflightWriteBytes bounds the bytes of remote-write bodies,
	// compressed and decoded, held by the requests being served at once,
	// across tenants (the in-flight memory budget of Mimir's
	// -distributor.max-inflight-push-requests-bytes); a request that would
	// go over it gets 503 with Retry-After before its body is decoded. A
	// request larger than the whole budget is admitted when no other is in
	// flight. Zero means unlimited.
	MaxInflightWriteBytes int64

	Registerer prometheus.Registerer // may be nil
	Logger     *slog.Logger          // may be nil
}

// Limiter enforces the limits of every tenant.
type Limiter struct {
	opts   Options
	logger *slog.Logger

	overrides atomic.Pointer[overrides] // nil without a file
	gen       atomic.Uint64             // bumped on each reload
	lastCheck atomic.Int64
	reloadMu  sync.Mutex

	mu      sync.Mutex
	tenants map[string]*tenantState

	inflight      atomic.Int64
	inflightBytes atomic.Int64

	rejected *prometheus.CounterVec
}

// tenantState is the enforcement state of one tenant, rebuilt when its
// limits change.
type tenantState struct {
	gen     uint64
	limits  Limits
	ingest  *rate.Limiter // nil: unlimited
	events  *rate.Limiter
	queries chan struct{} // nil: unlimited
	waiting atomic.Int64
}

// New returns a Limiter, reading the overrides file if there is one.
func New(opts Options) (*Limiter, error) {
	if err := opts.Defaults.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxInflightWrites < 0 {
		return nil, fmt.Errorf("limits: max inflight writes %d is negative (--limits.max-inflight-writes)", opts.MaxInflightWrites)
	}
	if opts.MaxInflightWriteBytes < 0 {
		return nil, fmt.Errorf("limits: max inflight write bytes %d is negative (--limits.max-inflight-write-bytes)", opts.MaxInflightWriteBytes)
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = 10 * time.Second
	}
	l := &Limiter{opts: opts, logger: opts.Logger, tenants: map[string]*tenantState{}}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if opts.OverridesFile != "" {
		o, err := loadOverrides(opts.OverridesFile, opts.Defaults)
		if err != nil {
			return nil, err
		}
		l.overrides.Store(o)
	}
	l.lastCheck.Store(time.Now().UnixNano())
	l.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "levitated_limits_rejected_requests_total",
		Help: "Requests refused by a per-tenant or server-wide limit, by tenant and limit.",
	}, []string{"tenant", "limit"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(l.rejected); err != nil {
			return nil, fmt.Errorf("register limit metrics: %w", err)
		}
	}
	return l, nil
}

// maybeReload re-reads the overrides file if it changed.
func (l *Limiter) maybeReload() {
	if l.opts.OverridesFile == "" {
		return
	}
	now := time.Now().UnixNano()
	last := l.lastCheck.Load()
	if now-last < int64(l.opts.ReloadInterval) || !l.lastCheck.CompareAndSwap(last, now) {
		return
	}
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	fi, err := os.Stat(l.opts.OverridesFile)
	if err != nil {
		l.logger.Error("limits overrides not reloaded; the last ones read stay in force", "file", l.opts.OverridesFile, "err", err)
		return
	}
	if cur := l.overrides.Load(); cur != nil && fi.ModTime().Equal(cur.modTime) {
		return
	}
	o, err := loadOverrides(l.opts.OverridesFile, l.opts.Defaults)
	if err != nil {
		l.logger.Error("limits overrides not reloaded; the last ones read stay in force", "file", l.opts.OverridesFile, "err", err)
		return
	}
	l.overrides.Store(o)
	l.gen.Add(1)
	l.logger.Info("limits overrides reloaded", "file", l.opts.OverridesFile, "tenants", len(o.tenants))
}

// For returns the limits of tenantID.
func (l *Limiter) For(tenantID string) Limits {
	lim, _ := l.limitsOf(tenantID)
	return lim
}

// limitsOf is For, with the overrides it read them from (nil if none are
// loaded), which name the settings that set them (overrides.setting).
func (l *Limiter) limitsOf(tenantID string) (Limits, *overrides) {
	l.maybeReload()
	o := l.overrides.Load()
	if o != nil {
		if t, ok := o.tenants[tenantID]; ok {
			return t.limits, o
		}
	}
	return l.opts.Defaults, o
}

// state returns the enforcement state of tenantID, built on first use and
// rebuilt when the overrides change. Buckets start full.
func (l *Limiter) state(tenantID string) *tenantState {
	lim := l.For(tenantID)
	gen := l.gen.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.tenants[tenantID]
	if st != nil && st.gen == gen {
		return st
	}
	if st != nil && st.limits == lim {
		st.gen = gen
		return st
	}
	st = &tenantState{gen: gen, limits: lim}
	if lim.IngestionRate > 0 {
		st.ingest = rate.NewLimiter(rate.Limit(lim.IngestionRate), burst(lim.IngestionRate, lim.IngestionBurstSize))
	}
	if lim.EventsRate > 0 {
		st.events = rate.NewLimiter(rate.Limit(lim.EventsRate), burst(lim.EventsRate, lim.EventsBurstSize))
	}
	if lim.MaxConcurrentQueries > 0 {
		st.queries = make(chan struct{}, lim.MaxConcurrentQueries)
	}
	l.tenants[tenantID] = st
	return st
}

func burst(r float64, b int) int {
	if b > 0 {
		return b
	}
	return max(1, int(math.Ceil(r)))
}

func (l *Limiter) setting(tenantID, limit string) string {
	return l.overrides.Load().setting(tenantID, limit)
}

func (l *Limiter) reject(_ context.Context, e *Error, limit string) *Error {
	l.rejected.WithLabelValues(e.Tenant, limit).Inc()
	return e
}

// LimitsIngestion reports whether ctx's tenant has an ingestion rate
// limit, so that callers count samples only when it does.
func (l *Limiter) LimitsIngestion(ctx context.Context) bool {
	return l.For(tenant.FromContext(ctx)).IngestionRate > 0
}

// AdmitSamples takes n samples from the ingestion bucket of ctx's tenant,
// or refuses the whole request with 429 and the time after which the
// bucket holds n. A request larger than the burst can never pass: it is
// refused with 429 and a message saying so, without Retry-After.
func (l *Limiter) AdmitSamples(ctx context.Context, n int) error {
	return l.admit(ctx, n, "ingestion rate", "samples", "ingestion_rate", "ingestion_burst_size", func(st *tenantState) (*rate.Limiter, float64, int) {
		return st.ingest, st.limits.IngestionRate, st.limits.IngestionBurstSize
	})
}

// AdmitEvents takes n events from the events bucket of ctx's tenant, as
// AdmitSamples does for samples.
func (l *Limiter) AdmitEvents(ctx context.Context, n int) error {
	return l.admit(ctx, n, "events rate", "events", "events_rate", "events_burst_size", func(st *tenantState) (*rate.Limiter, float64, int) {
		return st.events, st.limits.EventsRate, st.limits.EventsBurstSize
	})
}

func (l *Limiter) admit(ctx context.Context, n int, name, unit, rateKey, burstKey string, pick func(*tenantState) (*rate.Limiter, float64, int)) error {
	if n <= 0 || (l.overrides.Load() == nil && l.opts.Defaults.IngestionRate == 0 && l.opts.Defaults.EventsRate == 0) {
		return nil
	}
	t := tenant.FromContext(ctx)
	st := l.state(t)
	lim, r, _ := pick(st)
	if lim == nil {
		return nil
	}
	e := &Error{
		Tenant:  t,
		Limit:   name,
		Value:   fmt.Sprintf("%g %s/s with a burst of %d", r, unit, lim.Burst()),
		Setting: l.setting(t, rateKey) + " and " + l.setting(t, burstKey),
		Code:    http.StatusTooManyRequests,
	}
	if n > lim.Burst() {
		e.Detail = fmt.Sprintf("the request carries %d %s, more than the burst allows at once; send smaller requests", n, unit)
		return l.reject(ctx, e, rateKey)
	}
	now := time.Now()
	res := lim.ReserveN(now, n)
	if delay := res.DelayFrom(now); delay > 0 {
		res.CancelAt(now)
		e.Detail = fmt.Sprintf("the request carries %d %s", n, unit)
		e.RetryAfter = delay
		return l.reject(ctx, e, rateKey)
	}
	return nil
}

// CheckSeries refuses, with 429, a write that has grown ctx's tenant to
// more than its series limit; before and after are the tenant's series
// counts around the write's creation of series.
func (l *Limiter) CheckSeries(ctx context.Context, before, after int) error {
	t := tenant.FromContext(ctx)
	lim := l.For(t)
	if lim.MaxSeries <= 0 || after <= before || after <= lim.MaxSeries {
		return nil
	}
	return l.reject(ctx, &Error{
		Tenant:     t,
		Limit:      "series",
		Value:      fmt.Sprintf("%d series", lim.MaxSeries),
		Setting:    l.setting(t, "max_series"),
		Detail:     "the request creates new series; nothing of it was stored",
		Code:       http.StatusTooManyRequests,
		RetryAfter: time.Minute,
	}, "max_series")
}

// HasSeriesLimit reports whether ctx's tenant has a series limit.
func (l *Limiter) HasSeriesLimit(ctx context.Context) bool {
	return l.For(tenant.FromContext(ctx)).MaxSeries > 0
}

// StartWrite counts a write request in flight across tenants; done must
// be called when it ends. Over MaxInflightWrites it refuses with 503 and
// Retry-After, an overload the client must retry.
func (l *Limiter) StartWrite(ctx context.Context) (done func(), err error) {
	if l.opts.MaxInflightWrites <= 0 {
		return func() {}, nil
	}
	if n := l.inflight.Add(1); n > int64(l.opts.MaxInflightWrites) {
		l.inflight.Add(-1)
		return nil, l.reject(ctx, &Error{
			Tenant:     tenant.FromContext(ctx),
			Limit:      "in-flight write requests",
			Value:      fmt.Sprintf("%d requests across tenants", l.opts.MaxInflightWrites),
			Setting:    "--limits.max-inflight-writes",
			Detail:     "the server is overloaded; nothing of the request was stored",
			Code:       http.StatusServiceUnavailable,
			RetryAfter: time.Second,
		}, "max_inflight_writes")
	}
	return func() { l.inflight.Add(-1) }, nil
}

// ReserveWriteBytes reserves n bytes of the in-flight write budget for a
// request; release must be called when the request no longer holds its
// body. Over MaxInflightWriteBytes it refuses with 503 and Retry-After,
// an overload the client must retry (nothing of the request was stored).
func (l *Limiter) ReserveWriteBytes(ctx context.Context, n int64) (release func(), err error) {
	limit := l.opts.MaxInflightWriteBytes
	if limit <= 0 {
		return func() {}, nil
	}
	for {
		cur := l.inflightBytes.Load()
		if cur > 0 && cur+n > limit {
			return nil, l.reject(ctx, &Error{
				Tenant:     tenant.FromContext(ctx),
				Limit:      "in-flight write bytes",
				Value:      fmt.Sprintf("%d bytes of request bodies across tenants", limit),
				Setting:    "--limits.max-inflight-write-bytes",
				Detail:     fmt.Sprintf("the request holds %d bytes (compressed and decoded) and %d are in flight; nothing of it was stored", n, cur),
				Code:       http.StatusServiceUnavailable,
				RetryAfter: time.Second,
			}, "max_inflight_write_bytes")
		}
		if l.inflightBytes.CompareAndSwap(cur, cur+n) {
			return func() { l.inflightBytes.Add(-n) }, nil
		}
	}
}

// maxQueuedQueriesPerSlot bounds how many queries of a tenant may wait per
// concurrency slot; beyond, they are refused at once.
const maxQueuedQueriesPerSlot = 16

// AcquireQuery waits for one of the concurrent-query slots of ctx's
// tenant until ctx ends, and returns its release. A tenant whose queue is
// full, or whose query waited until ctx ended, is refused with 429 and
// Retry-After.
func (l *Limiter) AcquireQuery(ctx context.Context) (release func(), err error) {
	if l.overrides.Load() == nil && l.opts.Defaults.MaxConcurrentQueries == 0 {
		return func() {}, nil
	}
	t := tenant.FromContext(ctx)
	st := l.state(t)
	if st.queries == nil {
		return func() {}, nil
	}
	e := &Error{
		Tenant:     t,
		Limit:      "concurrent queries",
		Value:      fmt.Sprintf("%d queries", cap(st.queries)),
		Setting:    l.setting(t, "max_concurrent_queries"),
		Code:       http.StatusTooManyRequests,
		RetryAfter: time.Second,
	}
	select {
	case st.queries <- struct{}{}:
		return func() { <-st.queries }, nil
	default:
	}
	if len(st.queries) >= cap(st.queries) && queued(st) >= int64(maxQueuedQueriesPerSlot*cap(st.queries)) {
		e.Detail = "too many queries are already waiting"
		return nil, l.reject(ctx, e, "max_concurrent_queries")
	}
	st.waiting.Add(1)
	defer st.waiting.Add(-1)
	select {
	case st.queries <- struct{}{}:
		return func() { <-st.queries }, nil
	case <-ctx.Done():
		e.Detail = "the query waited for a slot until " + ctx.Err().Error()
		return nil, l.reject(ctx, e, "max_concurrent_queries")
	}
}

func queued(st *tenantState) int64 { return st.waiting.Load() }

// StartQuery admits a query of ctx's tenant: it returns ctx with the
// query's deadline, how long the query may take in all from now
// (queueing for a slot, parsing, evaluation and the answer: the tenant's
// query timeout, or ceiling, the engine's --query.timeout, if that is
// shorter or the tenant has none), having waited for one of the tenant's
// concurrent-query slots until that deadline (AcquireQuery). done
// releases the slot and the deadline. The engine's own timeout starts only
// when evaluation does, so without this deadline the time spent queueing
// and parsing would come on top of --query.timeout.
func (l *Limiter) StartQuery(ctx context.Context, ceiling time.Duration) (_ context.Context, done func(), err error) {
	timeout := time.Duration(l.For(tenant.FromContext(ctx)).QueryTimeout)
	if timeout <= 0 || timeout > ceiling {
		timeout = ceiling
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	release, err := l.AcquireQuery(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ctx, func() { release(); cancel() }, nil
}

// MaxSamplesPerQuery returns the per-query sample limit of ctx's tenant
// (zero: none) and the setting that sets it.
func (l *Limiter) MaxSamplesPerQuery(ctx context.Context) (int, string) {
	t := tenant.FromContext(ctx)
	return l.For(t).MaxSamplesPerQuery, l.setting(t, "max_samples_per_query")
}
