package limits

import (
	"context"
	"errors"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/tenant"
)

// Store is what the write limits wrap: the store's appenders (Prometheus'
// v1 and v2 interfaces), the tenant's series count the series limit
// reads, a series' reference and labels found by its labels (the
// remote-write receiver appends a series seen before by reference) and
// whether it takes writes now.
// pkg/storage.DB is one.
type Store interface {
	storage.Appendable
	storage.AppendableV2
	SeriesCount(ctx context.Context) int
	SeriesByLabels(ctx context.Context) func(labels.Labels) (storage.SeriesRef, labels.Labels, bool)
	WriteError() error
}

// SamplesAt says when an Appendable takes a request's samples from the
// tenant's ingestion bucket.
type SamplesAt int

const (
	// SamplesBeforeDecode: the receiver asks AdmitSamples itself once the
	// body is decoded, before anything of it is stored (remote write,
	// which counts a body's samples on the wire).
	SamplesBeforeDecode SamplesAt = iota
	// SamplesAtCommit: Commit takes the samples appended since the
	// appender was made, and refuses the whole request (rolled back) when
	// the bucket does not hold them (OTLP, whose samples are known only
	// once translated).
	SamplesAtCommit
)

// Appendable is a store with ctx's tenant's write limits: appenders of a
// tenant with a series limit refuse the sample that grows the tenant past
// it (the receiver then rolls the request back whole), and, with
// SamplesAtCommit, Commit takes the appended samples from the tenant's
// ingestion bucket first. It also answers the receiver's questions before
// a body is stored (WriteQuota): the in-flight byte budget, the samples per
// second and the tenant's label limits. Every refusal is an *Error.
type Appendable struct {
	inner Store
	l     *Limiter
	at    SamplesAt
}

// NewAppendable wraps inner with l's limits.
func NewAppendable(inner Store, l *Limiter, at SamplesAt) *Appendable {
	return &Appendable{inner: inner, l: l, at: at}
}

// SeriesByLabels implements the remote-write receiver's look-up of series
// seen before.
func (s *Appendable) SeriesByLabels(ctx context.Context) func(labels.Labels) (storage.SeriesRef, labels.Labels, bool) {
	return s.inner.SeriesByLabels(ctx)
}

// WriteError is the store's reason for refusing writes now, if any.
func (s *Appendable) WriteError() error { return s.inner.WriteError() }

// ReserveWriteBytes reserves n bytes of the in-flight write budget
// (Limiter.ReserveWriteBytes).
func (s *Appendable) ReserveWriteBytes(ctx context.Context, n int64) (release func(), err error) {
	return s.l.ReserveWriteBytes(ctx, n)
}

// AdmitSamples takes the samples of a decoded request from the tenant's
// ingestion bucket; count is called only when the tenant has a rate.
func (s *Appendable) AdmitSamples(ctx context.Context, count func() int) error {
	if !s.l.LimitsIngestion(ctx) {
		return nil
	}
	return s.l.AdmitSamples(ctx, count())
}

// LabelLimits are the label limits of ctx's tenant: labels per series,
// bytes of a label name and of a label value; zero for the receiver's
// default.
func (s *Appendable) LabelLimits(ctx context.Context) (names, nameBytes, valueBytes int) {
	lim := s.l.For(tenant.FromContext(ctx))
	return lim.MaxLabelNamesPerSeries, lim.MaxLabelNameLength, lim.MaxLabelValueLength
}

// Appender implements storage.Appendable.
func (s *Appendable) Appender(ctx context.Context) storage.Appender {
	app := s.inner.Appender(ctx)
	if !s.l.HasSeriesLimit(ctx) {
		return app
	}
	return &appender{Appender: app, check: s.seriesCheck(ctx)}
}

// AppenderV2 implements storage.AppendableV2.
func (s *Appendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	app := s.inner.AppenderV2(ctx)
	hasSeries := s.l.HasSeriesLimit(ctx)
	atCommit := s.at == SamplesAtCommit
	if !hasSeries && !atCommit {
		return app
	}
	a := &appenderV2{AppenderV2: app, ctx: ctx, l: s.l, atCommit: atCommit}
	if hasSeries {
		a.check = s.seriesCheck(ctx)
	}
	return a
}

// seriesCheck wraps an append of a series the caller has no reference for
// (which may create it) with the tenant's series count before and after.
func (s *Appendable) seriesCheck(ctx context.Context) func(append func() (storage.SeriesRef, error)) (storage.SeriesRef, error) {
	return func(append func() (storage.SeriesRef, error)) (storage.SeriesRef, error) {
		before := s.inner.SeriesCount(ctx)
		ref, err := append()
		if err != nil {
			return ref, err
		}
		if err := s.l.CheckSeries(ctx, before, s.inner.SeriesCount(ctx)); err != nil {
			return 0, err
		}
		return ref, nil
	}
}

type appender struct {
	storage.Appender
	check func(func() (storage.SeriesRef, error)) (storage.SeriesRef, error)
}

func (a *appender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if ref != 0 {
		return a.Appender.Append(ref, l, t, v)
	}
	return a.check(func() (storage.SeriesRef, error) { return a.Appender.Append(ref, l, t, v) })
}

func (a *appender) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if ref != 0 {
		return a.Appender.AppendHistogram(ref, l, t, h, fh)
	}
	return a.check(func() (storage.SeriesRef, error) { return a.Appender.AppendHistogram(ref, l, t, h, fh) })
}

type appenderV2 struct {
	storage.AppenderV2
	ctx      context.Context
	l        *Limiter
	check    func(func() (storage.SeriesRef, error)) (storage.SeriesRef, error) // nil: no series limit
	atCommit bool
	samples  int
}

func (a *appenderV2) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	app := func() (storage.SeriesRef, error) { return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts) }
	var (
		r   storage.SeriesRef
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
func (a *appenderV2) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	ea, ok := a.AppenderV2.(storage.ExemplarAppenderV2)
	if !ok {
		return ref, errors.New("store appender takes no exemplars")
	}
	return ea.AppendExemplars(ref, ls, es)
}

func (a *appenderV2) Commit() error {
	if a.atCommit {
		if err := a.l.AdmitSamples(a.ctx, a.samples); err != nil {
			_ = a.AppenderV2.Rollback()
			return err
		}
	}
	return a.AppenderV2.Commit()
}
