package impact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/tenant"
)

// Tenants names the tenants and maps them to their ids (pkg/tenant.IDs;
// *storage.DB).
type Tenants interface {
	TenantNames() []string
	TenantID(ctx context.Context, name string) (uint32, error)
}

// Options configure a Service.
type Options struct {
	// ConfigFile is the YAML configuration (docs/impact.md); empty means
	// DefaultConfig. It is re-read when it changes; a bad file is logged
	// and the configuration in force stays.
	ConfigFile string
	// Interval is how often the scheduler looks for changes to judge.
	// Default 15s.
	Interval time.Duration
	// Disabled turns automatic judgements off (the gate and the impact API
	// still work).
	Disabled bool
	// Workers is how many changes are judged at once, each service's one
	// after another (pool.go). Default DefaultWorkers.
	Workers int
	// CPUShare is the share of the time the scheduler's queries may take
	// (Engine's Pacer, built by the server): 0 < CPUShare ≤ 1; 0 means
	// DefaultCPUShare.
	CPUShare float64
	// Now is the clock; default time.Now.
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Deps are what a Service uses.
type Deps struct {
	Analyzer Analyzer
	Events   EventStore
	Samples  promstorage.Appendable
	Tenants  Tenants
	// Parser parses signal templates (levitated's PromQL parser).
	Parser parser.Parser
	// Series are the stored series (the tenant in the context): a
	// configuration file whose signal has no data is refused at load
	// (Config.CheckData). Nil: not checked.
	Series promstorage.Queryable
}

// Service judges changes automatically (Run), answers the impact of a
// change (Impact) and evaluates gates (Gate).
type Service struct {
	opts    Options
	deps    Deps
	judge   Judge
	rec     recorder
	cfg     atomic.Pointer[loadedConfig]
	metrics serviceMetrics
	// reloadMu orders the reloads of the tick and of Reload.
	reloadMu sync.Mutex

	mu     sync.Mutex
	judged map[uint32]map[string]judgedState // changes with a change_impact event, per tenant
	// unwritten are change_impact events whose series are not all
	// written yet (a write failed after the event): written again at each
	// tick until they are.
	unwritten map[uint32]map[string]events.Event
}

type loadedConfig struct {
	Config
	modTime time.Time
}

type serviceMetrics struct {
	judgements *prometheus.CounterVec
	failures   prometheus.Counter
	reloads    *prometheus.CounterVec
}

// New loads the configuration (an error names the file, line and field)
// and returns the service.
func New(deps Deps, opts Options) (*Service, error) {
	if opts.Interval <= 0 {
		opts.Interval = 15 * time.Second
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("impact: workers (--impact.workers) is %d; at least 1", opts.Workers)
	}
	if err := ValidCPUShare(opts.CPUShare); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{opts: opts, deps: deps, judge: Judge{Analyzer: deps.Analyzer},
		rec: recorder{events: deps.Events, samples: deps.Samples}, judged: map[uint32]map[string]judgedState{},
		unwritten: map[uint32]map[string]events.Event{}}
	lc := &loadedConfig{Config: DefaultConfig()}
	if opts.ConfigFile != "" {
		var err error
		if lc, err = s.load(); err != nil {
			return nil, err
		}
	}
	s.cfg.Store(lc)
	s.metrics = serviceMetrics{
		judgements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levitated_impact_judgements_total",
			Help: "Changes judged automatically or by a gate, by verdict.",
		}, []string{"verdict"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_impact_judgement_errors_total",
			Help: "Judgements that failed and will be retried.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levitated_impact_config_reloads_total",
			Help: "Reloads of the impact configuration file, by result.",
		}, []string{"result"}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.metrics.judgements, s.metrics.failures, s.metrics.reloads} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register impact metrics: %w", err)
			}
		}
	}
	return s, nil
}

// dataCheckTimeout bounds the look for the signals' series at load.
const dataCheckTimeout = 30 * time.Second

func (s *Service) load() (*loadedConfig, error) {
	fi, err := os.Stat(s.opts.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("impact config: %w", err)
	}
	c, err := LoadConfig(s.opts.ConfigFile, s.deps.Parser)
	if err != nil {
		return nil, err
	}
	if s.deps.Series != nil && s.deps.Tenants != nil {
		ctx, cancel := context.WithTimeout(context.Background(), dataCheckTimeout)
		defer cancel()
		var nd *NoDataError
		switch err := c.CheckData(ctx, s.deps.Series, s.deps.Tenants.TenantNames(), s.deps.Parser); {
		case err == nil:
		case errors.As(err, &nd):
			return nil, err
		case errors.Is(err, ErrStoreEmpty):
			s.opts.Logger.Info("impact configuration: "+err.Error(), "file", s.opts.ConfigFile)
		default:
			// The store could not say: refusing would stop levitated
			// for a failure that is not the file's.
			s.opts.Logger.Warn("impact configuration: the signals' data could not be checked", "file", s.opts.ConfigFile, "err", err)
		}
	}
	return &loadedConfig{Config: c, modTime: fi.ModTime()}, nil
}

// Reload re-reads the configuration file now (SIGHUP, POST /-/reload). A
// bad file is refused with its file, line and reason, and the
// configuration in force stays. Without a file there is nothing to do.
func (s *Service) Reload() error {
	if s.opts.ConfigFile == "" {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	lc, err := s.load()
	if err != nil {
		s.metrics.reloads.WithLabelValues("error").Inc()
		if fi, serr := os.Stat(s.opts.ConfigFile); serr == nil {
			// The file was read: the tick's check does not read it again.
			cur := *s.cfg.Load()
			cur.modTime = fi.ModTime()
			s.cfg.Store(&cur)
		}
		return fmt.Errorf("impact configuration not reloaded, the one in force stays: %w", err)
	}
	s.cfg.Store(lc)
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.opts.Logger.Info("impact configuration reloaded", "file", s.opts.ConfigFile)
	return nil
}

// Config returns the configuration in force.
func (s *Service) Config() *Config { return &s.cfg.Load().Config }

// maybeReload re-reads the configuration file if it changed; a bad one is
// logged and the configuration in force stays.
func (s *Service) maybeReload() {
	if s.opts.ConfigFile == "" {
		return
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	fi, err := os.Stat(s.opts.ConfigFile)
	if err == nil && fi.ModTime().Equal(s.cfg.Load().modTime) {
		return
	}
	lc, err := s.load()
	if err != nil {
		s.metrics.reloads.WithLabelValues("error").Inc()
		s.opts.Logger.Error("impact configuration not reloaded; the one in force stays", "file", s.opts.ConfigFile, "err", err)
		// Do not retry the same file every tick.
		if fi != nil {
			cur := *s.cfg.Load()
			cur.modTime = fi.ModTime()
			s.cfg.Store(&cur)
		}
		return
	}
	s.cfg.Store(lc)
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.opts.Logger.Info("impact configuration reloaded", "file", s.opts.ConfigFile)
}

// Run judges changes every Interval until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if s.opts.Disabled {
		return nil
	}
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		s.maybeReload()
		for _, name := range s.deps.Tenants.TenantNames() {
			if err := s.judgeDue(tenant.NewContext(ctx, name)); err != nil && ctx.Err() == nil {
				s.opts.Logger.Error("impact: judge changes", "tenant", name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// due is a change whose time to be judged (in a phase) has come.
type due struct {
	change Change
	at     time.Time
	phase  string
}

// judgedState is what the scheduler knows of a change's judgements.
type judgedState struct {
	// initial: its initial judgement is recorded, at initialAt.
	initial   bool
	initialAt time.Time
	// early: its early judgement (an open window) is recorded.
	early bool
	// done: nothing more to judge (a final judgement is recorded, or the
	// judgement again at the end of the grace found nothing changed).
	done bool
}

// judgeDue judges, each service's in the order they fell due, the changes
// of the tenant in ctx that ended within the horizon, are due, and have no
// change_impact event; and, with a grace, judges again those whose first
// judgement came before the end of their grace.
func (s *Service) judgeDue(ctx context.Context) error {
	cfg := s.Config()
	now := s.opts.Now()
	tid, err := tenant.ID(ctx, s.deps.Tenants)
	if err != nil {
		return err
	}
	judged, err := s.judgedSet(ctx, tid, now.Add(-cfg.Horizon))
	if err != nil {
		return err
	}
	s.retryUnwritten(ctx, tid)
	var todo []due
	for _, name := range cfg.Events {
		evs, err := listAll(ctx, s.deps.Events, tid, events.Query{Name: name, Start: now.Add(-cfg.Horizon), End: now})
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.State == events.StateStart && cfg.OpenAfter > 0 && e.Window != nil && e.Window.Open() && !judged[e.ID].early {
				// An open window: judged once OpenAfter after its start.
				if at := e.Time.Add(cfg.OpenAfter); !at.After(now) {
					if c, isChange := ChangeOf(cfg, e, e, at); isChange {
						todo = append(todo, due{c, at, PhaseEarly})
					}
				}
				continue
			}
			if e.State != events.StateStop {
				continue // a window is judged from its stop
			}
			id := e.ID
			if e.Window != nil {
				id = e.Window.StartID
			}
			st := judged[id]
			ok := st.initial
			if ok && (cfg.Grace == 0 || st.done) {
				continue
			}
			var start events.Event
			if e.Window != nil {
				if start, err = s.deps.Events.Get(ctx, tid, e.Window.StartID); err != nil {
					if errors.Is(err, events.ErrNotFound) {
						continue // past retention
					}
					return fmt.Errorf("read the start of window %s: %w", id, err)
				}
			}
			c, isChange := ChangeOf(cfg, e, start, now)
			if !isChange {
				continue
			}
			switch final := c.End.Add(cfg.Grace); {
			case !ok:
				if at := c.End.Add(cfg.Delay); !at.After(now) {
					todo = append(todo, due{c, at, PhaseInitial})
				}
			case !st.initialAt.Before(final):
				// Judged after the grace had ended: it saw the late data.
				s.markJudged(tid, id, PhaseFinal, time.Time{})
			case !final.After(now):
				todo = append(todo, due{c, final, PhaseFinal})
			}
		}
	}
	slices.SortStableFunc(todo, func(a, b due) int { return a.at.Compare(b.at) })
	s.judgeAll(ctx, tid, cfg, todo)
	return nil
}

// judgeAndRecord judges c and records the judgement once. A change judged
// already returns the recorded judgement.
func (s *Service) judgeAndRecord(ctx context.Context, tid uint32, cfg *Config, c Change, now time.Time) (Judgement, error) {
	jd, err := s.judge.Judge(ctx, cfg, c, nil, now)
	var perm *PermanentError
	if errors.As(err, &perm) {
		jd, err = Inconclusive(c, now, perm), nil
	}
	if err != nil {
		return jd, err
	}
	jd.Phase = PhaseInitial
	return s.recordJudgement(ctx, tid, c, jd)
}

// recordJudgement records jd, once per change and phase: a judgement
// recorded already is returned instead.
func (s *Service) recordJudgement(ctx context.Context, tid uint32, c Change, jd Judgement) (Judgement, error) {
	ev, err := s.rec.record(ctx, tid, &jd)
	var se *SeriesError
	switch {
	case errors.Is(err, events.ErrConflict):
		s.markJudged(tid, c.ID, jd.Phase, ev.Time)
		return judgementOf(ev)
	case errors.As(err, &se):
		// Recorded: the event is the commit record. The series follow.
		s.opts.Logger.Warn("impact: judgement recorded, its series are written again at the next tick", "change", c.ID, "err", err)
		s.setUnwritten(tid, ev)
	case err != nil:
		var fe *events.FieldError
		if errors.As(err, &fe) {
			// The change's attributes cannot be recorded (too many with
			// ours): retrying cannot help.
			s.markJudged(tid, c.ID, PhaseFinal, time.Time{})
			s.opts.Logger.Error("impact: judgement cannot be recorded", "change", c.ID, "err", err)
		}
		return jd, err
	}
	s.markJudged(tid, c.ID, jd.Phase, ev.Time)
	s.metrics.judgements.WithLabelValues(jd.Verdict).Inc()
	jd.EventID = ev.ID
	return jd, nil
}

// judgeEarly judges the open window c (ending OpenAfter after its start)
// and records it as its early judgement.
func (s *Service) judgeEarly(ctx context.Context, tid uint32, cfg *Config, c Change, now time.Time) error {
	jd, err := s.judge.Judge(ctx, cfg, c, nil, now)
	var perm *PermanentError
	if errors.As(err, &perm) {
		jd, err = Inconclusive(c, now, perm), nil
	}
	if err != nil {
		return err
	}
	jd.Phase = PhaseEarly
	_, err = s.recordJudgement(ctx, tid, c, jd)
	return err
}

// judgeAgain judges c again at the end of its grace. If the figures
// changed since its recorded judgement (late data), the new judgement is
// recorded as the final one, superseding it; else nothing is recorded.
func (s *Service) judgeAgain(ctx context.Context, tid uint32, cfg *Config, c Change, now time.Time) error {
	ev, ok, err := s.recorded(ctx, tid, c.ID)
	if err != nil {
		return err
	}
	if !ok || ev.Attributes[attrPhase] == PhaseFinal {
		s.markJudged(tid, c.ID, PhaseFinal, time.Time{})
		return nil
	}
	prior, err := judgementOf(ev)
	if err != nil {
		return err
	}
	jd, err := s.judge.Judge(ctx, cfg, c, nil, now)
	var perm *PermanentError
	if errors.As(err, &perm) {
		jd, err = Inconclusive(c, now, perm), nil
	}
	if err != nil {
		return err
	}
	if sameFigures(prior, jd) {
		s.markJudged(tid, c.ID, PhaseFinal, time.Time{})
		return nil
	}
	jd.Phase, jd.Supersedes = PhaseFinal, ev.ID
	_, err = s.recordJudgement(ctx, tid, c, jd)
	return err
}

// sameFigures reports whether two judgements of a change rest on the same
// data: the same verdict and score, and for every signal the same counts
// and means on both sides.
func sameFigures(a, b Judgement) bool {
	return figures(a) == figures(b)
}

func figures(jd Judgement) string {
	var sb strings.Builder
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	fmt.Fprintf(&sb, "%s %s;", jd.Verdict, f(jd.Score))
	for _, c := range jd.Comparisons {
		fmt.Fprintf(&sb, "%s %s;", c.Kind, c.Verdict)
		for _, sr := range c.Signals {
			fmt.Fprintf(&sb, "%s %v %t %d %d %s %s;", sr.Signal, sr.Labels, sr.Judged, sr.BaselineCount, sr.CanaryCount, f(sr.BaselineMean), f(sr.CanaryMean))
		}
	}
	return sb.String()
}

// judgedSet returns what is known of the judgements of the tenant's
// changes, read from the change_impact events once per tenant and kept up
// to date after.
func (s *Service) judgedSet(ctx context.Context, tid uint32, since time.Time) (map[string]judgedState, error) {
	s.mu.Lock()
	set, ok := s.judged[tid]
	s.mu.Unlock()
	if !ok {
		evs, err := listAll(ctx, s.deps.Events, tid, events.Query{Name: EventImpact, Start: since})
		if err != nil {
			return nil, err
		}
		set = map[string]judgedState{}
		for _, e := range evs {
			id := e.Attributes[attrChangeID]
			st := set[id]
			switch e.Attributes[attrPhase] {
			case PhaseFinal:
				st.done = true
			case PhaseEarly:
				st.early = true
			default:
				st.initial, st.initialAt = true, e.Time
			}
			set[id] = st
		}
		// A crash between a change_impact event and its series leaves the
		// series unwritten: write the series of the recent events again
		// (those written already are no-ops).
		s.repairSeries(ctx, tid, evs)
		s.mu.Lock()
		if cur, ok := s.judged[tid]; ok {
			for id, st := range cur {
				set[id] = st
			}
		}
		s.judged[tid] = set
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]judgedState, len(set))
	for id, st := range set {
		out[id] = st
	}
	return out, nil
}

// markJudged notes a judgement of a change: its initial one, recorded at
// at, or that nothing more is to be judged (PhaseFinal).
func (s *Service) markJudged(tid uint32, id, phase string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.judged[tid] == nil {
		return // read from the store on first use
	}
	st := s.judged[tid][id]
	switch phase {
	case PhaseFinal:
		st.done = true
	case PhaseEarly:
		st.early = true
	default:
		st.initial, st.initialAt = true, at
	}
	s.judged[tid][id] = st
}

// recorded returns the change_impact event of a change, if there is one.
func (s *Service) recorded(ctx context.Context, tid uint32, changeID string) (events.Event, bool, error) {
	return recordedEvent(ctx, s.deps.Events, tid, changeID)
}

func (s *Service) setUnwritten(tid uint32, ev events.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unwritten[tid] == nil {
		s.unwritten[tid] = map[string]events.Event{}
	}
	s.unwritten[tid][ev.ID] = ev
}

// retryUnwritten writes again the series of the tenant's judgements whose
// series failed to be written.
func (s *Service) retryUnwritten(ctx context.Context, tid uint32) {
	s.mu.Lock()
	var evs []events.Event
	for _, ev := range s.unwritten[tid] {
		evs = append(evs, ev)
	}
	s.mu.Unlock()
	for _, ev := range evs {
		if err := s.rec.writeSeries(ctx, tid, ev, nil); err != nil && !tooOld(err) {
			s.opts.Logger.Warn("impact: the series of a judgement are still not written", "event", ev.ID, "err", err)
			continue
		}
		s.mu.Lock()
		delete(s.unwritten[tid], ev.ID)
		s.mu.Unlock()
	}
}

// repairSeries writes the series of change_impact events again: those
// already written are no-ops, those missing after a crash are written.
// Samples older than the store's out-of-order window cannot be written any
// more; they are logged at debug level (most are there already).
func (s *Service) repairSeries(ctx context.Context, tid uint32, evs []events.Event) {
	type key struct{ service, name string }
	past := map[key][]events.Event{} // all the judgements of a service's changes of a name
	for _, e := range evs {
		k := key{e.Attributes[attrService], e.Attributes[attrChangeName]}
		if _, ok := past[k]; !ok {
			p, err := s.rec.judgementsOf(ctx, tid, k.service, k.name)
			if err != nil {
				s.opts.Logger.Warn("impact: the series of past judgements not checked", "service", k.service, "err", err)
				return
			}
			past[k] = p
		}
		if err := s.rec.writeSeries(ctx, tid, e, past[k]); err != nil {
			if tooOld(err) {
				s.opts.Logger.Debug("impact: series of a past judgement not checked: older than the out-of-order window", "event", e.ID, "err", err)
				continue
			}
			s.opts.Logger.Warn("impact: the series of a past judgement could not be written again", "event", e.ID, "err", err)
		}
	}
}

// tooOld reports whether err is the store refusing samples for their age.
func tooOld(err error) bool {
	return errors.Is(err, promstorage.ErrTooOldSample) || errors.Is(err, promstorage.ErrOutOfBounds)
}
