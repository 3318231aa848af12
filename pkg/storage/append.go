package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// ErrInvalidSample is returned, wrapped, for a sample or label set the store
// cannot hold. It is Prometheus' own tsdb.ErrInvalidSample.
var ErrInvalidSample = tsdb.ErrInvalidSample

// AppenderV2 returns an appender for the tenant in ctx. One appender is one
// Pebble batch: Commit returns after the batch is synced to disk.
func (db *DB) AppenderV2(ctx context.Context) storage.AppenderV2 {
	a := appenderPool.Get().(*appender)
	a.db, a.ctx = db, ctx
	return a
}

// Appender returns a Prometheus v1 appender over AppenderV2.
func (db *DB) Appender(ctx context.Context) storage.Appender {
	return &appenderV1{a: db.AppenderV2(ctx).(*appender)}
}

var appenderPool = sync.Pool{New: func() any { return &appender{pending: map[*memSeries]pendingLast{}} }}

type pendingSample struct {
	s   *memSeries
	smp sample
}

type pendingExemplar struct {
	s *memSeries
	e exemplar.Exemplar
}

type pendingMetadata struct {
	family string
	m      metadata.Metadata
}

// pendingLast is the newest sample an appender holds for a series, so that
// samples within one appender are ordered like committed ones.
type pendingLast struct {
	smp sample
}

type appender struct {
	db  *DB
	ctx context.Context
	th  *tenantHead
	err error // sticky: the tenant could not be resolved
	// holding is the holders epoch the appender holds from its first
	// look-up of a series (0: none): retention may remove a series it
	// holds, whose symbols must stay readable until it is done.
	holding uint64

	samples   []pendingSample
	exemplars []pendingExemplar
	metadata  []pendingMetadata
	newSeries []*memSeries
	pending   map[*memSeries]pendingLast
	enc       walEncoder
	rec       []byte // a new series' record, copied into the batch
}

func (a *appender) release() {
	clear(a.samples)
	clear(a.exemplars)
	clear(a.newSeries)
	clear(a.pending)
	a.samples, a.exemplars, a.metadata, a.newSeries = a.samples[:0], a.exemplars[:0], a.metadata[:0], a.newSeries[:0]
	if a.holding != 0 {
		a.db.holders.release(a.holding)
		a.holding = 0
	}
	a.db, a.ctx, a.th, a.err = nil, nil, nil, nil
	if cap(a.samples) > 1<<16 {
		a.samples = nil
	}
	if cap(a.rec) > 1<<16 {
		a.rec = nil
	}
	appenderPool.Put(a)
}

func (a *appender) tenant() (*tenantHead, error) {
	if a.th == nil && a.err == nil {
		a.th, a.err = a.db.tenantForWrite(a.ctx)
		if a.err == nil {
			a.holding = a.db.holders.acquire()
		}
	}
	return a.th, a.err
}

// validateLabels applies the checks of Prometheus' head to a new series.
func validateLabels(ls labels.Labels) error {
	if ls.IsEmpty() {
		return fmt.Errorf("empty labelset: %w", ErrInvalidSample)
	}
	if l, dup := ls.HasDuplicateLabelNames(); dup {
		return fmt.Errorf(`label name "%s" is not unique: %w`, l, ErrInvalidSample)
	}
	sorted := true
	prev := ""
	ls.Range(func(l labels.Label) {
		if l.Name < prev {
			sorted = false
		}
		prev = l.Name
	})
	if !sorted {
		return fmt.Errorf("labels %s are not sorted by name: %w", ls.String(), ErrInvalidSample)
	}
	return nil
}

func (a *appender) series(ref storage.SeriesRef, ls labels.Labels) (*memSeries, error) {
	th, err := a.tenant()
	if err != nil {
		return nil, err
	}
	if ref != 0 {
		// As in Prometheus' head, a reference the store handed out names
		// its series; the labels are not compared again.
		if s := th.getByRef(uint64(ref)); s != nil {
			return s, nil
		}
	}
	if s := th.get(ls, ls.Hash()); s != nil {
		return s, nil
	}
	if err := validateLabels(ls); err != nil {
		return nil, err
	}
	if th.nextIdx.Load() > maxIndexIDs {
		return nil, ErrIndexIDsExhausted
	}
	return th.getOrCreate(ls), nil
}

// SeriesByLabels returns a function that finds a series of the tenant in
// ctx by its labels and returns its reference and its labels, so that a
// receiver appends a series seen before by reference, without building its
// labels. The store keeps no labels.Labels of a series to hand out (it
// interns their strings: symbolTable), and building one per look-up would
// cost an allocation per sample: the labels returned are the ones looked
// up, equal to the series', valid as long as the caller's are (they may
// alias memory the caller reuses; Append by the reference does not keep
// them). The tenant is resolved once: a request looks up thousands of
// series.
func (db *DB) SeriesByLabels(ctx context.Context) func(labels.Labels) (storage.SeriesRef, labels.Labels, bool) {
	th := db.tenantFor(ctx)
	return func(ls labels.Labels) (storage.SeriesRef, labels.Labels, bool) {
		if th == nil {
			if th = db.tenantFor(ctx); th == nil {
				return 0, labels.EmptyLabels(), false
			}
		}
		s := th.get(ls, ls.Hash())
		if s == nil {
			return 0, labels.EmptyLabels(), false
		}
		return storage.SeriesRef(s.ref), ls, true
	}
}

// Append adds a sample to the batch after checking it against the stored
// series and the samples already in this appender, returning Prometheus'
// sentinel errors (wrapped with the series) for samples that cannot go in.
func (a *appender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if err := a.db.checkUsable(); err != nil {
		return 0, err
	}
	s, err := a.series(ref, ls)
	if err != nil {
		return 0, err
	}
	switch {
	case h != nil:
		if err := h.Validate(); err != nil {
			return 0, fmt.Errorf("series %s at %d: %w", a.th.seriesLabels(s).String(), t, err)
		}
	case fh != nil:
		if err := fh.Validate(); err != nil {
			return 0, fmt.Errorf("series %s at %d: %w", a.th.seriesLabels(s).String(), t, err)
		}
	}
	smp := sample{st: st, t: t, v: v, h: h, fh: fh}
	if err := a.check(s, smp, opts.RejectOutOfOrder); err != nil {
		return 0, fmt.Errorf("%w for series %s at timestamp %d", err, a.th.seriesLabels(s).String(), t)
	}
	// The caller may reuse histograms after Append returns.
	if h != nil {
		smp.h = h.Copy()
	}
	if fh != nil {
		smp.fh = fh.Copy()
	}
	a.samples = append(a.samples, pendingSample{s: s, smp: smp})
	if pl, ok := a.pending[s]; !ok || t > pl.smp.t {
		a.pending[s] = pendingLast{smp: smp}
	}
	var perr *storage.AppendPartialError
	if len(opts.Exemplars) > 0 {
		perr = a.addExemplars(s, opts.Exemplars)
	}
	if !opts.Metadata.IsEmpty() {
		family := opts.MetricFamilyName
		if family == "" {
			family = metricFamily(a.th.symbols.get(s.syms, labels.MetricName), opts.Metadata.Type, h == nil && fh == nil)
		}
		// A sender attaches the metadata to every sample of a series
		// (remote write 2.0): keep one entry per run of equal ones.
		if n := len(a.metadata); n == 0 || a.metadata[n-1].family != family || a.metadata[n-1].m != opts.Metadata {
			a.metadata = append(a.metadata, pendingMetadata{family: family, m: opts.Metadata})
		}
	}
	return storage.SeriesRef(s.ref), perr.ToError()
}

// check decides whether smp may be appended, as Prometheus' memSeries
// appendable does, with the out-of-order window of the options.
func (a *appender) check(s *memSeries, smp sample, rejectOOO bool) error {
	th := a.th
	maxT := th.maxT.Load()
	retention := a.db.opts.Retention.Milliseconds()
	if maxT != math.MinInt64 && smp.t < maxT-retention {
		return storage.ErrOutOfBounds
	}
	s.mu.Lock()
	if err := a.db.ensureLoaded(th, s); err != nil {
		s.mu.Unlock()
		return err
	}
	lastH, lastFH := s.lastHist()
	last := sample{t: s.lastT, v: s.lastV, h: lastH, fh: lastFH}
	if pl, ok := a.pending[s]; ok && pl.smp.t >= last.t {
		last = pl.smp
	}
	if last.t == math.MinInt64 || smp.t > last.t {
		s.mu.Unlock()
		return nil
	}
	if smp.t == last.t {
		s.mu.Unlock()
		if sameSample(last, smp) {
			return nil
		}
		return duplicateErr(last, smp)
	}
	// Out of order.
	window := a.db.opts.oooWindowMillis()
	if rejectOOO {
		s.mu.Unlock()
		return storage.ErrOutOfOrderSample
	}
	if window == 0 {
		s.mu.Unlock()
		return storage.ErrOutOfOrderSample
	}
	if smp.t < maxT-window {
		s.mu.Unlock()
		return storage.ErrTooOldSample
	}
	existing, found := s.inMemoryAt(smp.t)
	s.mu.Unlock()
	if !found {
		for _, p := range a.samples {
			if p.s == s && p.smp.t == smp.t {
				existing, found = p.smp, true
			}
		}
	}
	if !found {
		var err error
		existing, found, err = a.db.persistedAt(th, s, smp.t)
		if err != nil {
			return err
		}
	}
	if found && !sameSample(existing, smp) {
		return duplicateErr(existing, smp)
	}
	return nil
}

func duplicateErr(existing, smp sample) error {
	switch {
	case smp.h == nil && smp.fh == nil && (existing.h != nil || existing.fh != nil):
		return storage.NewDuplicateHistogramToFloatErr(smp.t, smp.v)
	case smp.h == nil && smp.fh == nil:
		return storage.NewDuplicateFloatErr(smp.t, existing.v, smp.v)
	}
	return storage.ErrDuplicateSampleForTimestamp
}

func (a *appender) addExemplars(s *memSeries, es []exemplar.Exemplar) *storage.AppendPartialError {
	var perr *storage.AppendPartialError
	for i, e := range es {
		if err := validateExemplar(e); err != nil {
			if perr == nil {
				perr = &storage.AppendPartialError{}
			}
			perr.ExemplarErrors = append(perr.ExemplarErrors, storage.ExemplarError{Index: i, Err: err})
			continue
		}
		e.Labels = e.Labels.Copy()
		a.exemplars = append(a.exemplars, pendingExemplar{s: s, e: e})
	}
	return perr
}

func validateExemplar(e exemplar.Exemplar) error {
	n := 0
	e.Labels.Range(func(l labels.Label) { n += len([]rune(l.Name)) + len([]rune(l.Value)) })
	if n > exemplar.ExemplarMaxLabelSetLength {
		return storage.ErrExemplarLabelLength
	}
	return nil
}

// AppendExemplars adds exemplars of a series appended before.
func (a *appender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	th, err := a.tenant()
	if err != nil {
		return 0, err
	}
	var s *memSeries
	if ref != 0 {
		s = th.getByRef(uint64(ref))
	}
	if s == nil {
		s = th.get(ls, ls.Hash())
	}
	if s == nil {
		return 0, storage.ErrNotFound
	}
	return storage.SeriesRef(s.ref), a.addExemplars(s, es).ToError()
}

// Rollback drops everything appended.
func (a *appender) Rollback() error {
	a.release()
	return nil
}

// Commit writes the batch with pebble.Sync and applies it to memory.
func (a *appender) Commit() (err error) {
	defer a.release()
	if len(a.samples) == 0 && len(a.exemplars) == 0 && len(a.metadata) == 0 {
		return nil
	}
	db := a.db
	if err := db.checkUsable(); err != nil {
		return err
	}
	th, err := a.tenant()
	if err != nil {
		return err
	}
	b := db.pdb.NewBatch()
	defer func() {
		if b != nil {
			_ = b.Close()
		}
	}()

	if err := a.writeMetadata(b); err != nil {
		return err
	}
	for _, pe := range a.exemplars {
		if err := b.Set(exemplarKey(th.id, pe.s.ref, pe.e.Ts), encodeExemplar(nil, pe.e), nil); err != nil {
			return fmt.Errorf("write exemplar: %w", err)
		}
	}

	o := db.chunkOpts()
	var conflicts int
	changedMin, changedMax := int64(math.MaxInt64), int64(math.MinInt64)
	db.applyMu.Lock()
	db.seq++
	seq := db.seq
	db.unwritten.begin(seq)
	handedOff := false // to CommitSync's done, which ends seq
	defer func() {
		if !handedOff {
			db.unwritten.end(seq)
		}
	}()
	a.enc.reset()
	for i := range a.samples {
		p := &a.samples[i]
		s := p.s
		s.mu.Lock()
		if s.flags.has(flagDeleted) {
			s.mu.Unlock()
			s = th.getOrCreate(th.seriesLabels(s))
			p.s = s
			s.mu.Lock()
		}
		if !s.flags.has(flagDurable) && !s.flags.has(flagInBatch) {
			s.flags.set(flagInBatch, true)
			a.newSeries = append(a.newSeries, s)
		}
		res, aerr := db.applyLocked(th, s, p.smp, o, false)
		s.mu.Unlock()
		if aerr != nil {
			db.applyMu.Unlock()
			return aerr
		}
		if res == applyConflict {
			conflicts++
			continue
		}
		th.observeTime(p.smp.t)
		changedMin, changedMax = min(changedMin, p.smp.t), max(changedMax, p.smp.t)
		if err := a.enc.add(s.ref, p.smp); err != nil {
			db.applyMu.Unlock()
			db.fail(err)
			return err
		}
	}
	for _, s := range a.newSeries {
		s.mu.Lock()
		s.flags.set(flagInBatch, false)
		s.mu.Unlock()
	}
	db.applyMu.Unlock()
	if db.beforeWAL != nil {
		db.beforeWAL()
	}
	// The samples of series already indexed are visible now; those of new
	// series once the commit indexes them (below).
	db.changed(th, changedMin, changedMax)
	if conflicts > 0 {
		db.metrics.commitConflicts.Add(float64(conflicts))
	}

	for _, s := range a.newSeries {
		s.mu.Lock()
		a.rec = encodeInternedSeriesRecord(a.rec[:0], s.firstDay, s.lastDay, th.symbols, s.syms)
		s.flags.set(flagDaysDirty, false)
		s.mu.Unlock()
		if err := b.Set(seriesKey(th.id, s.ref), a.rec, nil); err != nil {
			return fmt.Errorf("write series: %w", err)
		}
	}
	if len(a.enc.buf) > 1 {
		if err := b.Set(walKey(th.id, seq), a.enc.buf, nil); err != nil {
			return fmt.Errorf("write WAL record: %w", err)
		}
	}
	size := int64(b.Len())
	appended := len(a.samples) - conflicts
	newSeries := slices.Clone(a.newSeries)
	commit := b
	b = nil // commitSync owns it
	handedOff = true
	// The callback indexes the new series, maybe after Commit returned.
	holding := a.holding
	a.holding = 0
	err = db.CommitSync(commit, func(err error) {
		if holding != 0 {
			defer db.holders.release(holding)
		}
		db.unwritten.end(seq)
		if err != nil {
			return
		}
		db.walBytes.Add(size)
		db.spillBytes.Add(size)
		db.metrics.samplesAppended.Add(float64(appended))
		for _, s := range newSeries {
			s.mu.Lock()
			s.flags.set(flagDurable, true)
			s.mu.Unlock()
		}
		th.index(newSeries)
		if len(newSeries) > 0 {
			db.changed(th, changedMin, changedMax)
		}
	})
	switch {
	case errors.Is(err, ErrUnavailable):
		// The commit is held up by the disk and completes (with its
		// samples, already in memory) once the disk takes writes again.
		return err
	case err != nil:
		// Memory already holds the samples; without their record the DB
		// cannot stay consistent, so it stops accepting writes.
		err = fmt.Errorf("commit batch: %w", err)
		db.fail(err)
		return err
	}
	return nil
}

// changed tells Options.OnChange of a change of th's samples in
// [mint, maxt] (nothing if mint > maxt).
func (db *DB) changed(th *tenantHead, mint, maxt int64) {
	if db.opts.OnChange != nil && mint <= maxt {
		db.opts.OnChange(th.name, mint, maxt)
	}
}

// applyResult is what applying one sample to memory did.
type applyResult int

const (
	applyInOrder applyResult = iota
	applyOutOfOrder
	applyDuplicate // already present with the same value
	applyConflict  // present with another value; dropped
)

// applyLocked applies a committed (or replayed) sample to the series'
// memory. The caller holds s.mu and, outside replay, db.applyMu.
func (db *DB) applyLocked(th *tenantHead, s *memSeries, smp sample, o chunkOpts, replay bool) (applyResult, error) {
	day := dayOf(smp.t)
	if day > s.lastDay {
		s.lastDay = day
		s.flags.set(flagDaysDirty, true)
	}
	if day < s.firstDay {
		s.firstDay = day
		s.flags.set(flagDaysDirty, true)
	}
	if s.lastT == math.MinInt64 || smp.t > s.lastT {
		s.appendInOrder(smp, o)
		return applyInOrder, nil
	}
	if smp.t == s.lastT {
		if s.sameAsLast(smp) {
			return applyDuplicate, nil
		}
		return applyConflict, nil
	}
	if existing, ok := s.inMemoryAt(smp.t); ok {
		if sameSample(existing, smp) {
			return applyDuplicate, nil
		}
		return applyConflict, nil
	}
	if replay {
		existing, ok, err := db.persistedAt(th, s, smp.t)
		if err != nil {
			return 0, err
		}
		if ok {
			if sameSample(existing, smp) {
				return applyDuplicate, nil
			}
			return applyConflict, nil
		}
	}
	s.insertOOO(smp)
	return applyOutOfOrder, nil
}

func (a *appender) writeMetadata(b *pebble.Batch) error {
	if len(a.metadata) == 0 {
		return nil
	}
	th := a.th
	th.metaMu.Lock()
	defer th.metaMu.Unlock()
	for _, pm := range a.metadata {
		list, err := a.db.metadataLocked(th, pm.family)
		if err != nil {
			return err
		}
		if containsMetadata(list, pm.m) {
			continue
		}
		list = append(list, pm.m)
		if len(list) > maxMetadataPerFamily {
			list = list[len(list)-maxMetadataPerFamily:]
		}
		th.metadata[pm.family] = list
		if err := b.Set(metadataKey(th.id, pm.family), encodeMetadata(nil, list), nil); err != nil {
			return fmt.Errorf("write metadata: %w", err)
		}
	}
	return nil
}

func containsMetadata(list []metadata.Metadata, m metadata.Metadata) bool {
	for _, o := range list {
		if o == m {
			return true
		}
	}
	return false
}

// appenderV1 adapts the appender to Prometheus' v1 Appender interface.
type appenderV1 struct {
	a         *appender
	rejectOOO bool
}

func (v *appenderV1) Append(ref storage.SeriesRef, l labels.Labels, t int64, val float64) (storage.SeriesRef, error) {
	return v.a.Append(ref, l, 0, t, val, nil, nil, storage.AppendV2Options{RejectOutOfOrder: v.rejectOOO})
}

func (v *appenderV1) SetOptions(o *storage.AppendOptions) {
	v.rejectOOO = o != nil && o.DiscardOutOfOrder
}

func (v *appenderV1) AppendExemplar(ref storage.SeriesRef, l labels.Labels, e exemplar.Exemplar) (storage.SeriesRef, error) {
	return v.a.AppendExemplars(ref, l, []exemplar.Exemplar{e})
}

func (v *appenderV1) AppendHistogram(ref storage.SeriesRef, l labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return v.a.Append(ref, l, 0, t, 0, h, fh, storage.AppendV2Options{RejectOutOfOrder: v.rejectOOO})
}

func (v *appenderV1) AppendHistogramSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (storage.SeriesRef, error) {
	if st >= t {
		return 0, storage.ErrSTNewerThanSample
	}
	var zh *histogram.Histogram
	var zfh *histogram.FloatHistogram
	switch {
	case h != nil:
		zh = &histogram.Histogram{Schema: h.Schema, ZeroThreshold: h.ZeroThreshold, CustomValues: h.CustomValues, CounterResetHint: histogram.CounterReset}
	case fh != nil:
		zfh = &histogram.FloatHistogram{Schema: fh.Schema, ZeroThreshold: fh.ZeroThreshold, CustomValues: fh.CustomValues, CounterResetHint: histogram.CounterReset}
	}
	r, err := v.a.Append(ref, l, 0, st, 0, zh, zfh, storage.AppendV2Options{RejectOutOfOrder: true})
	if errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
		return r, storage.ErrOutOfOrderST
	}
	return r, err
}

func (v *appenderV1) AppendSTZeroSample(ref storage.SeriesRef, l labels.Labels, t, st int64) (storage.SeriesRef, error) {
	if st >= t {
		return 0, storage.ErrSTNewerThanSample
	}
	r, err := v.a.Append(ref, l, 0, st, 0, nil, nil, storage.AppendV2Options{RejectOutOfOrder: true})
	if errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) {
		return r, storage.ErrOutOfOrderST
	}
	return r, err
}

func (v *appenderV1) UpdateMetadata(ref storage.SeriesRef, l labels.Labels, m metadata.Metadata) (storage.SeriesRef, error) {
	family := l.Get(labels.MetricName)
	v.a.metadata = append(v.a.metadata, pendingMetadata{family: family, m: m})
	return ref, nil
}

func (v *appenderV1) Commit() error   { return v.a.Commit() }
func (v *appenderV1) Rollback() error { return v.a.Rollback() }

func modelMetricType(s string) model.MetricType { return model.MetricType(s) }
