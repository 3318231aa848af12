package kayenta

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// TenantIDs maps a tenant name to the numeric id its keys start with
// (pkg/tenant.IDs; *storage.DB).
type TenantIDs interface {
	TenantID(ctx context.Context, name string) (uint32, error)
}

// Options configure a Service. The zero value of a field means its default.
type Options struct {
	// Workers is how many executions run at once. Default 4.
	Workers int
	// ExecutionTimeout bounds one execution (all its queries and the
	// judge); a timed-out execution ends TERMINAL. Default 5m.
	ExecutionTimeout time.Duration
	// InstanceID names this server in the default application of
	// executions started without one ("kayenta-" + InstanceID, as Kayenta
	// uses its instance id). Default "levitated".
	InstanceID string
	// ScopeLabel is Kayenta's prometheus.scopeLabel: the label that holds
	// the scope for resourceType gce_instance. Default "instance".
	ScopeLabel string
	// AccountName is the account /credentials lists. Account names in
	// requests are recorded but select nothing: levitated has one store per
	// tenant. Default "levitated".
	AccountName string
	// MaxBodyBytes bounds request bodies. Default 4 MiB.
	MaxBodyBytes int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Recorder, if set, records every finished execution (Outcome).
	Recorder Recorder
	// Logger may be nil; Registerer may be nil.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Workers:          4,
		ExecutionTimeout: 5 * time.Minute,
		InstanceID:       "levitated",
		ScopeLabel:       "instance",
		AccountName:      "levitated",
		MaxBodyBytes:     4 << 20,
		Now:              time.Now,
	}
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	d := DefaultOptions()
	if o.Workers == 0 {
		o.Workers = d.Workers
	}
	if o.ExecutionTimeout == 0 {
		o.ExecutionTimeout = d.ExecutionTimeout
	}
	if o.InstanceID == "" {
		o.InstanceID = d.InstanceID
	}
	if o.ScopeLabel == "" {
		o.ScopeLabel = d.ScopeLabel
	}
	if o.AccountName == "" {
		o.AccountName = d.AccountName
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = d.MaxBodyBytes
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every field that cannot be used, in one error.
func (o Options) Validate() error {
	var errs []error
	if o.Workers < 0 {
		errs = append(errs, fmt.Errorf("kayenta: workers %d is negative", o.Workers))
	}
	if o.ExecutionTimeout < 0 {
		errs = append(errs, fmt.Errorf("kayenta: execution timeout %v is negative", o.ExecutionTimeout))
	}
	if o.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("kayenta: max body bytes %d is negative", o.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// Service is the Kayenta-compatible API: canary configs, canary executions
// run asynchronously by a pool of workers, their status and results, all
// stored in levitated's Pebble database so that they survive a restart.
type Service struct {
	ns      *storage.Namespace
	tenants TenantIDs
	queries *rangequery.Runner
	opts    Options
	queue   *queue
	metrics *metrics

	configMu sync.Mutex // config writes check names against the others
	idMu     sync.Mutex
	lastID   [16]byte
}

// New returns a Service over ns (the canary-analysis namespace,
// storage.OwnerAnalysis, of levitated's database), running queries with q. Mount its routes with Register and run its workers with
// Run.
func New(ns *storage.Namespace, tenants TenantIDs, q *rangequery.Runner, opts Options) (*Service, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{ns: ns, tenants: tenants, queries: q, opts: opts, queue: newQueue(), metrics: m}, nil
}

// Run re-queues the executions left unfinished by the last run, then runs
// queued executions until ctx ends. An execution interrupted by the end of
// ctx stays queued and runs again after the next start. Run returns once
// every worker has stopped.
func (s *Service) Run(ctx context.Context) error {
	pending, err := s.pendingExecutions()
	if err != nil {
		return err
	}
	for _, j := range pending {
		s.queue.push(j)
	}
	if len(pending) > 0 {
		s.opts.Logger.Info("resuming canary executions", "count", len(pending))
	}
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Go(func() {
			for {
				j, ok := s.queue.pop(ctx)
				if !ok {
					return
				}
				s.metrics.queued.Set(float64(s.queue.len()))
				s.execute(ctx, j)
				s.queue.done(j)
			}
		})
	}
	wg.Wait()
	return nil
}

// newID returns an Orca-style id: a ULID (48 bits of milliseconds, 80
// random bits, Crockford base32), monotonic within this process.
func (s *Service) newID() string {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	var id [16]byte
	ms := uint64(s.opts.Now().UnixMilli())
	binary.BigEndian.PutUint64(id[:8], ms<<16)
	if ms == binary.BigEndian.Uint64(s.lastID[:8])>>16 {
		// Same millisecond: the previous random part plus one.
		copy(id[6:], s.lastID[6:])
		for i := 15; i >= 6; i-- {
			id[i]++
			if id[i] != 0 {
				break
			}
		}
	} else {
		_, _ = rand.Read(id[6:])
	}
	s.lastID = id
	return crockford(id)
}

func crockford(id [16]byte) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	hi := binary.BigEndian.Uint64(id[:8])
	lo := binary.BigEndian.Uint64(id[8:])
	out := make([]byte, 26)
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}

// job is one queued execution.
type job struct {
	tid uint32
	id  string
}

// queue holds the executions waiting for a worker, in order, and knows
// which are queued or running so that none runs twice at once.
type queue struct {
	mu     sync.Mutex
	items  []job
	known  map[job]bool
	notify chan struct{}
}

func newQueue() *queue {
	return &queue{known: map[job]bool{}, notify: make(chan struct{}, 1)}
}

// push queues j unless it is already queued or running.
func (q *queue) push(j job) {
	q.mu.Lock()
	if q.known[j] {
		q.mu.Unlock()
		return
	}
	q.known[j] = true
	q.items = append(q.items, j)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// pop waits for a job until ctx ends.
func (q *queue) pop(ctx context.Context) (job, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			j := q.items[0]
			q.items = q.items[1:]
			more := len(q.items) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.notify <- struct{}{}:
				default:
				}
			}
			return j, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return job{}, false
		case <-q.notify:
		}
	}
}

// done forgets j once it has run.
func (q *queue) done(j job) {
	q.mu.Lock()
	delete(q.known, j)
	q.mu.Unlock()
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// metrics of the executions.
type metrics struct {
	finished     *prometheus.CounterVec
	duration     prometheus.Histogram
	queued       prometheus.Gauge
	recordErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levitated_kayenta_executions_total",
			Help: "Canary executions finished, by status (succeeded, terminal).",
		}, []string{"status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "levitated_kayenta_execution_duration_seconds",
			Help:    "Time from the start of a canary execution to its end.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levitated_kayenta_executions_queued",
			Help: "Canary executions waiting for a worker.",
		}),
		recordErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_kayenta_record_errors_total",
			Help: "Finished canary executions whose change_analysis record could not be stored.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.finished, m.duration, m.queued, m.recordErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register kayenta metrics: %w", err)
			}
		}
	}
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
