package limits

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/tenant"
)

// Engine applies the query limits of each query's tenant to a PromQL
// engine through Prometheus' per-query cost overrides
// (promql.NewPrometheusQueryOptsWithLimits): the samples a query may read
// and how long it may take. The engine must be built with
// EnableQueryCost, and its --query.timeout is the ceiling a tenant's
// timeout can only lower. Errors of these limits keep their Prometheus
// types (422 cost_limit, 503 timeout) and name the tenant's limit and the
// setting that changes it.
type Engine struct {
	promql.QueryEngine
	Limiter *Limiter
	// Timeout is the engine's --query.timeout.
	Timeout time.Duration
}

// NewInstantQuery implements promql.QueryEngine.
func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	opts, l := e.limit(ctx, opts)
	qry, err := e.QueryEngine.NewInstantQuery(ctx, q, opts, qs, ts)
	if err != nil {
		return nil, l.translate(err)
	}
	return &limitedQuery{Query: qry, l: l}, nil
}

// NewRangeQuery implements promql.QueryEngine.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	opts, l := e.limit(ctx, opts)
	qry, err := e.QueryEngine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	if err != nil {
		return nil, l.translate(err)
	}
	return &limitedQuery{Query: qry, l: l}, nil
}

// LimitsQuery reports whether the tenant of ctx has a samples or timeout
// limit that this engine applies to its queries: a query evaluated
// elsewhere (pkg/queryshard's rollups) would escape it.
func (e *Engine) LimitsQuery(ctx context.Context) bool {
	_, l := e.limit(ctx, nil)
	return l.samplesApplied || l.timeoutLimits
}

// queryLimits are the limits applied to one query.
type queryLimits struct {
	settings                      *overrides // at the query's start: names the settings in errors
	tenant                        string
	samples                       int
	timeout                       time.Duration
	samplesApplied, timeoutLimits bool
}

func (e *Engine) limit(ctx context.Context, opts promql.QueryOpts) (promql.QueryOpts, queryLimits) {
	l := queryLimits{tenant: tenant.FromContext(ctx)}
	// The settings that set the limits are named only in an error
	// (translate), from the overrides the limits were read from.
	var lim Limits
	lim, l.settings = e.Limiter.limitsOf(l.tenant)
	l.samples, l.timeout = lim.MaxSamplesPerQuery, time.Duration(lim.QueryTimeout)
	if l.timeout >= e.Timeout {
		l.timeout = 0 // cannot raise the engine's ceiling
	}
	if l.samples == 0 && l.timeout == 0 {
		return opts, l
	}
	if opts == nil {
		opts = promql.NewPrometheusQueryOpts(false, 0, nil)
	}
	var series, samples uint64
	var dur time.Duration
	if c, ok := opts.(promql.QueryCostOpts); ok {
		series, samples, dur = c.MaxSeries(), c.MaxSamplesRead(), c.MaxQueryDuration()
	}
	if l.samples > 0 && (samples == 0 || uint64(l.samples) < samples) {
		samples = uint64(l.samples)
		l.samplesApplied = true
	}
	if l.timeout > 0 && (dur <= 0 || l.timeout < dur) {
		dur = l.timeout
		l.timeoutLimits = true
	}
	return promql.NewPrometheusQueryOptsWithLimits(opts.EnablePerStepStats(), opts.LookbackDelta(), series, samples, dur, opts.UseStartTimestamps()), l
}

// translate names the tenant's limit in an error the limit caused.
func (l queryLimits) translate(err error) error {
	if err == nil {
		return nil
	}
	var tooMany promql.ErrTooManySamplesRead
	if l.samplesApplied && errors.As(err, &tooMany) {
		return &queryLimitError{err: err, msg: fmt.Sprintf("tenant %q: samples per query limit of %d samples exceeded (%v); set by %s", l.tenant, l.samples, err, l.settings.setting(l.tenant, "max_samples_per_query"))}
	}
	var timeout promql.ErrQueryTimeout
	if l.timeoutLimits && errors.As(err, &timeout) {
		return &queryLimitError{err: err, msg: fmt.Sprintf("tenant %q: query timeout limit of %s exceeded (%v); set by %s", l.tenant, l.timeout, err, l.settings.setting(l.tenant, "query_timeout"))}
	}
	return err
}

// queryLimitError rewords a Prometheus limit error, keeping its type for
// the API's status mapping.
type queryLimitError struct {
	err error
	msg string
}

func (e *queryLimitError) Error() string { return e.msg }
func (e *queryLimitError) Unwrap() error { return e.err }

type limitedQuery struct {
	promql.Query
	l queryLimits
}

// Exec implements promql.Query.
func (q *limitedQuery) Exec(ctx context.Context) *promql.Result {
	res := q.Query.Exec(ctx)
	if res.Err != nil {
		res.Err = q.l.translate(res.Err)
	}
	return res
}
