// Package promql is the one place levitated builds a PromQL engine, its
// parser and the queryable the engine reads (NewQueryable: samples merged
// with the change-event series, behind NarrowingQuerier). Everything that
// evaluates or parses PromQL (the HTTP API, the canary judge, rules) gets
// them from here, so every path accepts the same language and reads the
// same series.
package promql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// Options configures the engine. The zero value of a field means its default.
type Options struct {
	// Timeout is the longest a query may run, queueing included
	// (Prometheus' --query.timeout). Default 2m.
	Timeout time.Duration
	// MaxSamples is the most samples one query may hold in memory at once
	// (Prometheus' --query.max-samples). Default 50,000,000.
	MaxSamples int
	// LookbackDelta is how far back an instant vector selector looks for a
	// sample (Prometheus' --query.lookback-delta). Default 5m.
	LookbackDelta time.Duration
	// MaxConcurrency is the most queries evaluated at once; further queries
	// wait for a slot until their context ends (Prometheus'
	// --query.max-concurrency). Default 20.
	MaxConcurrency int
	// UseStartTimestamps lets rate() and friends use samples' start
	// timestamps where the store has them (Prometheus' experimental
	// st-storage feature; off by default, as in Prometheus).
	UseStartTimestamps bool
	// EnableQueryCost turns on Prometheus' query-cost feature with no
	// engine-wide cost limit, so that a query may carry its own lower
	// limits (promql.QueryCostOpts): the server sets it when per-tenant
	// query limits are configured (pkg/limits.Engine). With it, a query
	// whose deadline passes while it waits for a slot fails with
	// promql.ErrQueryTimeout (503) rather than the context's error.
	EnableQueryCost bool
	// MaxQueryLength is the longest query text accepted, in bytes
	// (--query.max-length). Default 65536.
	MaxQueryLength int
	// MaxQueryDepth is the deepest nesting of a query accepted
	// (--query.max-depth; QueryDepth). Default 500.
	MaxQueryDepth int

	Logger     *slog.Logger          // may be nil
	Registerer prometheus.Registerer // may be nil; engine metrics go here
}

// DefaultOptions returns the defaults of Prometheus v3's query flags.
func DefaultOptions() Options {
	return Options{
		Timeout:        2 * time.Minute,
		MaxSamples:     50_000_000,
		LookbackDelta:  5 * time.Minute,
		MaxConcurrency: 20,
		MaxQueryLength: DefaultMaxQueryLength,
		MaxQueryDepth:  DefaultMaxQueryDepth,
	}
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	d := DefaultOptions()
	if o.Timeout == 0 {
		o.Timeout = d.Timeout
	}
	if o.MaxSamples == 0 {
		o.MaxSamples = d.MaxSamples
	}
	if o.LookbackDelta == 0 {
		o.LookbackDelta = d.LookbackDelta
	}
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = d.MaxConcurrency
	}
	if o.MaxQueryLength == 0 {
		o.MaxQueryLength = d.MaxQueryLength
	}
	if o.MaxQueryDepth == 0 {
		o.MaxQueryDepth = d.MaxQueryDepth
	}
}

// Validate reports every field that cannot be used, in one error.
func (o Options) Validate() error {
	var errs []error
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("promql: timeout %v is negative", o.Timeout))
	}
	if o.MaxSamples < 0 {
		errs = append(errs, fmt.Errorf("promql: max samples %d is negative", o.MaxSamples))
	}
	if o.LookbackDelta < 0 {
		errs = append(errs, fmt.Errorf("promql: lookback delta %v is negative", o.LookbackDelta))
	}
	if o.MaxConcurrency < 0 {
		errs = append(errs, fmt.Errorf("promql: max concurrency %d is negative", o.MaxConcurrency))
	}
	if o.MaxQueryLength < 0 {
		errs = append(errs, fmt.Errorf("promql: max query length %d is negative (%s)", o.MaxQueryLength, FlagMaxQueryLength))
	}
	if o.MaxQueryDepth < 0 {
		errs = append(errs, fmt.Errorf("promql: max query depth %d is negative (%s)", o.MaxQueryDepth, FlagMaxQueryDepth))
	}
	return errors.Join(errs...)
}

// ParserOptions are the parser features levitated enables: the ones
// Prometheus' own PromQL test files need (promqltest.TestParserOpts), so that
// those files run unchanged against levitated's engine.
func ParserOptions() parser.Options {
	return parser.Options{
		EnableExperimentalFunctions: true,
		EnableBinopFillModifiers:    true,
		EnableUnquotedUTF8Names:     true,
	}
}

// NewParser returns the PromQL parser every levitated path uses, with
// the default query limits (Options.Parser has the configured ones).
func NewParser() parser.Parser {
	return DefaultOptions().Parser()
}

// Limits are the query limits of o (defaults for zero fields).
func (o Options) Limits() QueryLimits {
	o.EnsureDefaults()
	return QueryLimits{MaxLength: o.MaxQueryLength, MaxDepth: o.MaxQueryDepth}
}

// Parser returns the PromQL parser every levitated path uses: Prometheus'
// parser with ParserOptions, refusing a query beyond o's length and depth
// limits before it reads it (limits.go).
func (o Options) Parser() parser.Parser {
	return limitedParser{Parser: parser.NewParser(ParserOptions()), limits: o.Limits()}
}

// New builds a Prometheus engine from opts (defaults filled in). The @
// modifier, negative offsets, delayed __name__ removal and per-step stats
// are on, as in Prometheus v3; the query log is off. Its parser prepares
// the event-window functions' calls (eventparse.go), which no other engine
// can evaluate. Close the engine to release it.
func New(opts Options) (*promql.Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return promql.NewEngine(promql.EngineOpts{
		Logger:             logger,
		Reg:                opts.Registerer,
		MaxSamples:         opts.MaxSamples,
		Timeout:            opts.Timeout,
		ActiveQueryTracker: newConcurrencyLimit(opts.MaxConcurrency),
		LookbackDelta:      opts.LookbackDelta,
		// Prometheus' default for subqueries without a step is the global
		// evaluation interval, 1m.
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		EnablePerStepStats:       true,
		EnableDelayedNameRemoval: true,
		UseStartTimestamps:       opts.UseStartTimestamps,
		EnableQueryCost:          opts.EnableQueryCost,
		Parser:                   evalParser{Parser: opts.Parser(), maxSamples: opts.MaxSamples},
	}), nil
}

// concurrencyLimit is a promql.QueryTracker that only bounds how many
// queries run at once. Prometheus' ActiveQueryTracker does the same and also
// logs active queries to an mmapped file in the data directory; levitated
// keeps its data directory to the store, and logs no queries.
type concurrencyLimit struct {
	slots chan int
}

func newConcurrencyLimit(n int) *concurrencyLimit {
	c := &concurrencyLimit{slots: make(chan int, n)}
	for i := range n {
		c.slots <- i
	}
	return c
}

func (c *concurrencyLimit) GetMaxConcurrent() int { return cap(c.slots) }

// Insert waits for a free slot, or for ctx to end. A free slot is taken
// even if ctx has ended, so that the engine, not the queue, reports the
// timeout (as Prometheus' timeout or canceled error).
func (c *concurrencyLimit) Insert(ctx context.Context, _ string) (int, error) {
	select {
	case i := <-c.slots:
		return i, nil
	default:
	}
	select {
	case i := <-c.slots:
		return i, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *concurrencyLimit) Delete(i int) { c.slots <- i }

func (c *concurrencyLimit) Close() error { return nil }
