package server

import (
	"context"
	"errors"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/ingest"
	"github.com/levitated/levitated/pkg/limits"
	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/tenant"
)

// This file wires the per-tenant limits (pkg/limits) into the write and
// query paths: remote write's admission (samples per second, label
// limits), the series limit on every appender, OTLP's samples per second
// at commit, events per second on the event store, and the query limits
// on the engine.

// writeAdmission gives remote write the tenant's label limits and samples
// per second.
type writeAdmission struct{ l *limits.Limiter }

func (a writeAdmission) WriteLimits(ctx context.Context, d ingest.WriteLimits) ingest.WriteLimits {
	lim := a.l.For(tenant.FromContext(ctx))
	if lim.MaxLabelNamesPerSeries > 0 {
		d.MaxLabelsPerSeries = lim.MaxLabelNamesPerSeries
	}
	if lim.MaxLabelNameLength > 0 {
		d.MaxLabelNameBytes = lim.MaxLabelNameLength
	}
	if lim.MaxLabelValueLength > 0 {
		d.MaxLabelValueBytes = lim.MaxLabelValueLength
	}
	return d
}

func (a writeAdmission) ReserveBytes(ctx context.Context, n int64) (func(), error) {
	release, err := a.l.ReserveWriteBytes(ctx, n)
	if err != nil {
		return nil, err
	}
	return release, nil
}

func (a writeAdmission) AdmitSamples(ctx context.Context, n func() int) error {
	if !a.l.LimitsIngestion(ctx) {
		return nil
	}
	return a.l.AdmitSamples(ctx, n())
}

// limitedStore is the store as remote write and OTLP see it: appenders of
// a tenant with a series limit refuse the sample that grows the tenant
// past it (the request is then rolled back whole); with rateAtCommit
// (OTLP, whose samples are not counted before they are appended) Commit
// first takes the appended samples from the tenant's ingestion bucket.
type limitedStore struct {
	db           *storage.DB
	l            *limits.Limiter
	rateAtCommit bool
}

func (s *Server) writeStore() limitedStore { return limitedStore{db: s.db, l: s.sec.limiter} }
func (s *Server) otlpStore() limitedStore {
	return limitedStore{db: s.db, l: s.sec.limiter, rateAtCommit: true}
}

// SeriesLabels lets the remote-write receiver's series cache share the
// store's labels.
func (s limitedStore) SeriesLabels(ctx context.Context, ref promstorage.SeriesRef) (labels.Labels, bool) {
	return s.db.SeriesLabels(ctx, ref)
}

func (s limitedStore) Appender(ctx context.Context) promstorage.Appender {
	app := s.db.Appender(ctx)
	if !s.l.HasSeriesLimit(ctx) {
		return app
	}
	return &limitedAppender{Appender: app, check: s.seriesCheck(ctx)}
}

func (s limitedStore) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	app := s.db.AppenderV2(ctx)
	hasSeries := s.l.HasSeriesLimit(ctx)
	if !hasSeries && !s.rateAtCommit {
		return app
	}
	a := &limitedAppenderV2{AppenderV2: app, ctx: ctx, l: s.l, rateAtCommit: s.rateAtCommit}
	if hasSeries {
		a.check = s.seriesCheck(ctx)
	}
	return a
}

// seriesCheck wraps an append of a series the caller has no reference for
// (which may create it) with the tenant's series count before and after.
func (s limitedStore) seriesCheck(ctx context.Context) func(append func() (promstorage.SeriesRef, error)) (promstorage.SeriesRef, error) {
	return func(append func() (promstorage.SeriesRef, error)) (promstorage.SeriesRef, error) {
		before := s.db.SeriesCount(ctx)
		ref, err := append()
		if err != nil {
			return ref, err
		}
		if err := s.l.CheckSeries(ctx, before, s.db.SeriesCount(ctx)); err != nil {
			return 0, err
		}
		return ref, nil
	}
}

type limitedAppender struct {
	promstorage.Appender
	check func(func() (promstorage.SeriesRef, error)) (promstorage.SeriesRef, error)
}

func (a *limitedAppender) Append(ref promstorage.SeriesRef, l labels.Labels, t int64, v float64) (promstorage.SeriesRef, error) {
	if ref != 0 {
		return a.Appender.Append(ref, l, t, v)
	}
	return a.check(func() (promstorage.SeriesRef, error) { return a.Appender.Append(ref, l, t, v) })
}

func (a *limitedAppender) AppendHistogram(ref promstorage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (promstorage.SeriesRef, error) {
	if ref != 0 {
		return a.Appender.AppendHistogram(ref, l, t, h, fh)
	}
	return a.check(func() (promstorage.SeriesRef, error) { return a.Appender.AppendHistogram(ref, l, t, h, fh) })
}

type limitedAppenderV2 struct {
	promstorage.AppenderV2
	ctx          context.Context
	l            *limits.Limiter
	check        func(func() (promstorage.SeriesRef, error)) (promstorage.SeriesRef, error) // nil: no series limit
	rateAtCommit bool
	samples      int
}

func (a *limitedAppenderV2) Append(ref promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AppendV2Options) (promstorage.SeriesRef, error) {
	app := func() (promstorage.SeriesRef, error) { return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts) }
	var (
		r   promstorage.SeriesRef
		err error
	)
	if ref != 0 || a.check == nil {
		r, err = app()
	} else {
		r, err = a.check(app)
	}
	if err == nil {
		a.samples++
	}
	return r, err
}

// AppendExemplars passes exemplars on: Prometheus' remote write 2.0
// receiver needs a storage.ExemplarAppenderV2.
func (a *limitedAppenderV2) AppendExemplars(ref promstorage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (promstorage.SeriesRef, error) {
	ea, ok := a.AppenderV2.(promstorage.ExemplarAppenderV2)
	if !ok {
		return ref, errors.New("store appender takes no exemplars")
	}
	return ea.AppendExemplars(ref, ls, es)
}

func (a *limitedAppenderV2) Commit() error {
	if a.rateAtCommit {
		if err := a.l.AdmitSamples(a.ctx, a.samples); err != nil {
			_ = a.AppenderV2.Rollback()
			return err
		}
	}
	return a.AppenderV2.Commit()
}

// limitedEvents takes appended events from the tenant's events bucket.
type limitedEvents struct {
	ingest.EventStore
	l *limits.Limiter
}

func (s *Server) eventStore() ingest.EventStore {
	return limitedEvents{EventStore: s.events, l: s.sec.limiter}
}

func (e limitedEvents) Append(ctx context.Context, t uint32, evs []events.Event) ([]events.Event, error) {
	if err := e.l.AdmitEvents(ctx, len(evs)); err != nil {
		return nil, err
	}
	return e.EventStore.Append(ctx, t, evs)
}

// queryEngine is the engine with each tenant's query limits, refusing
// subqueries beyond --query.max-samples before they run.
func (s *Server) queryEngine() promql.QueryEngine {
	bounded := levpromql.BoundSubqueries(s.engine, s.opts.Query.MaxSamples)
	return &limits.Engine{QueryEngine: bounded, Limiter: s.sec.limiter, Timeout: s.opts.Query.Timeout}
}

// queryEngineOptions turns on the engine's query-cost feature, with no
// engine-wide cost limit. Per-tenant query limits need it; and only with it
// does Prometheus' engine check the query's context while a range
// function reads its window (the feature's guarded iterators), and start
// --query.timeout before the query waits for a slot and is parsed: without
// it, max_over_time(max_over_time(vector(1)[1d:1s])[30d:1s]) ran on for
// hours after its timeout and after its client left.
func queryEngineOptions(o Options) levpromql.Options {
	q := o.Query
	q.EnableQueryCost = true
	return q
}
