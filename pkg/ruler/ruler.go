// Package ruler evaluates Prometheus recording and alerting rules over
// levitated's own data and sends the alerts to Alertmanager, with
// Prometheus' code: one rules.Manager per tenant (as Mimir's and Cortex's
// rulers build theirs, pkg/ruler/compat.go), each querying through the
// engine and Queryable it is given (so the event-window functions work in
// rules) and appending recorded series, ALERTS and ALERTS_FOR_STATE through
// the given Appendable, with a context that carries its tenant; and one
// notifier.Manager speaking Alertmanager's v2 API.
//
// Rule files are Prometheus' (rulefmt). The files named by Options.Files
// belong to the default tenant (tenant.Default); Options.TenantDir holds
// one directory per tenant, TenantDir/<tenant>/*.yml and *.yaml, as Cortex's
// local rule store lays them out. A rule reads and writes only its tenant's
// series. Reload re-reads every file and the Alertmanager configuration;
// if any is bad it returns every error, naming file, line and reason, and
// the rules in force keep running.
package ruler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/tenant"
)

// Options configure a Ruler. Start from DefaultOptions.
type Options struct {
	// Files are the default tenant's rule files, as Prometheus'
	// rule_files: paths or globs.
	Files []string
	// TenantDir, if set, holds one directory per tenant, named by the
	// tenant, with that tenant's rule files (*.yml, *.yaml). The default
	// tenant's directory adds to Files.
	TenantDir string
	// EvaluationInterval is the interval of a group without its own
	// (Prometheus' global evaluation_interval).
	EvaluationInterval time.Duration

	// AlertmanagerURLs are Alertmanagers to send alerts to, each as
	// scheme://host:port[/path-prefix], over Alertmanager's v2 API.
	AlertmanagerURLs []string
	// AlertingConfigFile is a Prometheus configuration file of which the
	// alerting section (alertmanagers with static_configs, TLS, basic
	// auth, bearer tokens, relabelling) and global.external_labels are
	// read; any other section is refused. Re-read on Reload.
	AlertingConfigFile string
	// ExternalURL is the base of each alert's generatorURL, and
	// $externalURL in templates.
	ExternalURL string

	// OutageTolerance, ForGracePeriod and ResendDelay are Prometheus'
	// --rules.alert.for-outage-tolerance, --rules.alert.for-grace-period
	// and --rules.alert.resend-delay.
	OutageTolerance time.Duration
	ForGracePeriod  time.Duration
	ResendDelay     time.Duration
	// NotificationQueueCapacity is Prometheus'
	// --alertmanager.notification-queue-capacity.
	NotificationQueueCapacity int
	// ChangeWindow: an alert that starts firing during a change, or at
	// most this long after it, is sent with the change in its annotations
	// (Sources.Changes). Negative turns it off.
	ChangeWindow time.Duration

	// Registerer receives the rule manager's and the notifier's metrics,
	// under Prometheus' names (prometheus_rule_*, prometheus_notifications_*).
	Registerer prometheus.Registerer
	// Logger may be nil.
	Logger *slog.Logger
}

// DefaultOptions are Prometheus' defaults.
func DefaultOptions() Options {
	return Options{
		EvaluationInterval:        time.Minute,
		OutageTolerance:           time.Hour,
		ForGracePeriod:            10 * time.Minute,
		ResendDelay:               time.Minute,
		NotificationQueueCapacity: 10000,
		ChangeWindow:              30 * time.Minute,
	}
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	d := DefaultOptions()
	if o.EvaluationInterval == 0 {
		o.EvaluationInterval = d.EvaluationInterval
	}
	if o.OutageTolerance == 0 {
		o.OutageTolerance = d.OutageTolerance
	}
	if o.ForGracePeriod == 0 {
		o.ForGracePeriod = d.ForGracePeriod
	}
	if o.ResendDelay == 0 {
		o.ResendDelay = d.ResendDelay
	}
	if o.NotificationQueueCapacity == 0 {
		o.NotificationQueueCapacity = d.NotificationQueueCapacity
	}
	if o.ChangeWindow == 0 {
		o.ChangeWindow = d.ChangeWindow
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every field that cannot be used, in one error.
func (o Options) Validate() error {
	var errs []error
	if o.EvaluationInterval < 0 {
		errs = append(errs, fmt.Errorf("ruler: evaluation interval %v is negative", o.EvaluationInterval))
	}
	if o.OutageTolerance < 0 || o.ForGracePeriod < 0 || o.ResendDelay < 0 {
		errs = append(errs, errors.New("ruler: outage tolerance, for grace period and resend delay must not be negative"))
	}
	if o.NotificationQueueCapacity < 0 {
		errs = append(errs, fmt.Errorf("ruler: notification queue capacity %d is negative", o.NotificationQueueCapacity))
	}
	if o.ExternalURL != "" {
		if _, err := url.Parse(o.ExternalURL); err != nil {
			errs = append(errs, fmt.Errorf("ruler: external URL: %w", err))
		}
	}
	for _, u := range o.AlertmanagerURLs {
		if _, err := alertmanagerFromURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Sources are what rules evaluate over and write to. Every call carries
// the tenant of the rule in its context (pkg/tenant).
type Sources struct {
	// Engine evaluates rule expressions (instant queries).
	Engine promql.QueryEngine
	// Queryable is what expressions read, and where the for state of
	// alerts is restored from.
	Queryable storage.Queryable
	// Appendable receives recorded series, ALERTS and ALERTS_FOR_STATE.
	Appendable storage.AppendableV2
	// Parser parses rule expressions; it knows the functions the engine
	// evaluates (levitated's event-window functions).
	Parser parser.Parser
	// Changes, if set, finds the change that preceded an alert
	// (change-aware alerts); nil sends alerts as they are.
	Changes ChangeFinder
}

// Ruler runs one rules.Manager per tenant with rule files and one
// notifier.Manager for all of them.
type Ruler struct {
	opts    Options
	src     Sources
	logger  *slog.Logger
	metrics *rules.Metrics
	notify  *notifier.Manager
	targets chan notifierTargets

	reloadOK, reloadTime prometheus.Gauge

	// reloadMu serialises Reload; mu guards the fields below it.
	reloadMu sync.Mutex
	mu       sync.RWMutex
	managers map[string]*rules.Manager
	ctx      context.Context // set by Run; nil before
	wg       sync.WaitGroup
	config   loadedConfig
}

// New checks opts and loads every rule file and the Alertmanager
// configuration; an error names each bad file, line and reason. Nothing
// is evaluated until Run.
func New(opts Options, src Sources) (*Ruler, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if src.Engine == nil || src.Queryable == nil || src.Appendable == nil || src.Parser == nil {
		return nil, errors.New("ruler: Sources needs an engine, a queryable, an appendable and a parser")
	}
	r := &Ruler{
		opts:     opts,
		src:      src,
		logger:   opts.Logger,
		metrics:  rules.NewGroupMetrics(opts.Registerer),
		targets:  make(chan notifierTargets, 1),
		managers: map[string]*rules.Manager{},
	}
	r.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "levitated_rules_last_reload_successful",
		Help: "Whether the last reload of the rule files and Alertmanager configuration succeeded (as prometheus_config_last_reload_successful).",
	})
	r.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "levitated_rules_last_reload_success_timestamp_seconds",
		Help: "When the rule files and Alertmanager configuration were last loaded.",
	})
	if err := errors.Join(opts.Registerer.Register(r.reloadOK), opts.Registerer.Register(r.reloadTime)); err != nil {
		return nil, fmt.Errorf("ruler: register metrics: %w", err)
	}
	r.notify = notifier.NewManager(&notifier.Options{
		QueueCapacity:   opts.NotificationQueueCapacity,
		DrainOnShutdown: true,
		Registerer:      opts.Registerer,
	}, model.UTF8Validation, opts.Logger.With("component", "notifier"))
	if err := r.Reload(context.Background()); err != nil {
		return nil, err
	}
	return r, nil
}

// Run evaluates the rules and sends alerts until ctx ends, then stops
// every group (waiting for evaluations in flight) and drains the
// notification queue. Reload may be called while Run runs.
func (r *Ruler) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.ctx != nil {
		r.mu.Unlock()
		return errors.New("ruler: Run called twice")
	}
	r.ctx = ctx
	for _, m := range r.managers {
		r.start(m)
	}
	r.mu.Unlock()

	notifyDone := make(chan struct{})
	go func() {
		defer close(notifyDone)
		r.notify.Run(r.targets)
	}()

	<-ctx.Done()
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	r.mu.Lock()
	for _, m := range r.managers {
		m.Stop()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.notify.Stop()
	<-notifyDone
	return nil
}

// start runs m's evaluation loops; r.mu is held.
func (r *Ruler) start(m *rules.Manager) {
	r.wg.Go(m.Run)
}

// Reload re-reads every rule file and the Alertmanager configuration.
// If any of them is bad, it returns every error (file, line and reason)
// and changes nothing: the rules in force keep running. Groups that did
// not change keep their state; new tenants start; the groups of a tenant
// whose files are gone stop, and their series are marked stale.
func (r *Ruler) Reload(ctx context.Context) (err error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	defer func() {
		if err != nil {
			r.reloadOK.Set(0)
			return
		}
		r.reloadOK.Set(1)
		r.reloadTime.SetToCurrentTime()
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.RLock()
	stopped := r.ctx != nil && r.ctx.Err() != nil
	r.mu.RUnlock()
	if stopped {
		return errors.New("ruler: stopped")
	}
	cfg, err := loadConfig(r.opts, r.src.Parser, r.logger)
	if err != nil {
		return err
	}
	if err := r.notify.ApplyConfig(cfg.alerting); err != nil {
		return fmt.Errorf("apply Alertmanager configuration: %w", err)
	}
	// The newest targets replace any not yet taken.
	select {
	case <-r.targets:
	default:
	}
	r.targets <- cfg.targets

	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, t := range slices.Sorted(maps.Keys(cfg.files)) {
		m, ok := r.managers[t]
		if !ok {
			m = r.newManager(t)
			r.managers[t] = m
			if r.ctx != nil {
				r.start(m)
			}
		}
		if err := m.Update(r.opts.EvaluationInterval, cfg.files[t], cfg.externalLabels, r.opts.ExternalURL, nil); err != nil {
			// The files were checked above; they changed since.
			errs = append(errs, fmt.Errorf("tenant %q: %w", t, err))
		}
	}
	for t, m := range r.managers {
		if _, ok := cfg.files[t]; ok {
			continue
		}
		// No files any more: an update to none stops the tenant's groups
		// and marks their series stale two intervals later. The manager
		// stays, empty, so that it can still write those markers.
		if err := m.Update(r.opts.EvaluationInterval, nil, cfg.externalLabels, r.opts.ExternalURL, nil); err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", t, err))
		}
	}
	r.config = cfg
	if len(errs) > 0 {
		return fmt.Errorf("reload rules: %w", errors.Join(errs...))
	}
	r.logger.Info("rules loaded", "tenants", len(cfg.files), "files", cfg.fileCount())
	return nil
}

// newManager builds the rules.Manager of tenant t over the sources, with
// a context carrying t.
func (r *Ruler) newManager(t string) *rules.Manager {
	logger := r.logger.With("component", "rule manager", "tenant", t)
	ctx := tenant.NewContext(context.Background(), t)
	return rules.NewManager(&rules.ManagerOptions{
		NameValidationScheme: model.UTF8Validation,
		ExternalURL:          r.externalURL(),
		QueryFunc:            rules.EngineQueryFunc(r.src.Engine, r.src.Queryable),
		NotifyFunc:           r.notifyFunc(t),
		Context:              ctx,
		AppendableV2:         r.src.Appendable,
		Queryable:            r.src.Queryable,
		Logger:               logger,
		OutageTolerance:      r.opts.OutageTolerance,
		ForGracePeriod:       r.opts.ForGracePeriod,
		ResendDelay:          r.opts.ResendDelay,
		Metrics:              r.metrics,
		Parser:               r.src.Parser,
	})
}

func (r *Ruler) externalURL() *url.URL {
	u, err := url.Parse(r.opts.ExternalURL)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// manager is the rules.Manager of the tenant of ctx, or nil.
func (r *Ruler) manager(ctx context.Context) *rules.Manager {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.managers[tenant.FromContext(ctx)]
}

// Tenants are the tenants with rule files, sorted.
func (r *Ruler) Tenants() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.config.files))
}

// RuleGroups are the rule groups of the tenant of ctx, sorted by file and
// name, as Prometheus' /api/v1/rules lists them.
func (r *Ruler) RuleGroups(ctx context.Context) []*rules.Group {
	if m := r.manager(ctx); m != nil {
		return m.RuleGroups()
	}
	return nil
}

// AlertingRules are the alerting rules of the tenant of ctx.
func (r *Ruler) AlertingRules(ctx context.Context) []*rules.AlertingRule {
	if m := r.manager(ctx); m != nil {
		return m.AlertingRules()
	}
	return nil
}

// Alertmanagers are the Alertmanagers alerts are sent to.
func (r *Ruler) Alertmanagers() []*url.URL { return r.notify.Alertmanagers() }

// DroppedAlertmanagers are the Alertmanagers dropped by relabelling.
func (r *Ruler) DroppedAlertmanagers() []*url.URL { return r.notify.DroppedAlertmanagers() }

// Manager is the rules.Manager of tenant t, or nil if t has no rule
// files. For tests and tools; the API uses RuleGroups and AlertingRules.
func (r *Ruler) Manager(t string) *rules.Manager {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.managers[t]
}

// ExternalLabels are the external labels in force (global.external_labels
// of the alerting configuration file).
func (r *Ruler) ExternalLabels() labels.Labels {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.config.externalLabels
}
