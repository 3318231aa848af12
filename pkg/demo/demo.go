// Package demo plays a canary rollout on one machine, as a platform team
// would run it with levitated, Argo Rollouts and a CI pipeline: it starts
// levitated on a temporary directory, writes a service's RED metrics for its
// stable, baseline and canary pods through remote write (in simulated time,
// half an hour in a few seconds), marks the rollout and each canary stage
// (20 %, 40 %, 60 %, 80 %) with start and stop change events, and after each
// stage asks levitated's canary judge (POST /api/v1/analysis, with the
// request of deploy/argo-rollouts/canary-stage-judge.yaml) for a verdict: Pass
// goes on to the next stage or promotes, Fail rolls back, Marginal pauses.
// It prints a table per run and writes a self-contained HTML report with
// the charts and the stage regions.
//
// Nothing is scripted but the traffic: the verdicts are the judge's.
package demo

import (
	"context"

	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levitated/levitated/pkg/server"
)

// Timeline of a run, in simulated time.
const (
	warmup   = 10 * time.Minute // stable traffic before the rollout
	stageLen = 5 * time.Minute  // each canary stage
	cooldown = 5 * time.Minute  // after promotion or rollback
)

// runLength is the longest simulated span of one run.
var runLength = warmup + time.Duration(len(Weights))*stageLen + cooldown

// Weights are the canary stages, in percent of the traffic.
var Weights = []int{20, 40, 60, 80}

// Scenario is one rollout.
type Scenario struct {
	// Name is a short identifier: "healthy", "regression".
	Name string
	// Title describes it in the report.
	Title string
	// RegressAt is the weight from which the canary regresses (more errors,
	// slower); 0 for a healthy canary.
	RegressAt int
}

// Scenarios are the demo's two runs: a healthy canary, and one that
// regresses at 40 %.
var Scenarios = []Scenario{
	{Name: "healthy", Title: "A healthy canary", RegressAt: 0},
	{Name: "regression", Title: "A canary that regresses at 40 %", RegressAt: 40},
}

// Verdicts and decisions.
const (
	DecisionNext     = "next stage"
	DecisionPromote  = "promote"
	DecisionRollback = "roll back"
	DecisionPause    = "pause"

	OutcomePromoted   = "promoted"
	OutcomeRolledBack = "rolled back"
	OutcomePaused     = "paused"
)

// Options configure Run.
type Options struct {
	// Scenarios to run, in order; nil means Scenarios.
	Scenarios []Scenario
	// ListenAddress of each run's levitated; default 127.0.0.1:0.
	ListenAddress string
	// DataDir, if set, keeps each run's store in DataDir/<scenario>;
	// otherwise a temporary directory is used and removed.
	DataDir string
	// Report is the HTML report's path; empty writes none.
	Report string
	// Seed makes the simulated traffic reproducible.
	Seed uint64
	// Now anchors the simulated time: a run ends at Now. Default time.Now.
	Now func() time.Time
	// Out receives the progress and the tables; nil discards them.
	Out io.Writer
	// Logger receives levitated's logs; nil discards them.
	Logger *slog.Logger
	// URL, if set, plays the runs into the levitated running there instead
	// of starting one per run (ListenAddress and DataDir are then unused):
	// its dashboards and console show the rollouts. The runs are placed one
	// after the other, the last ending now, so their samples do not collide.
	URL string
	// Token is sent as a bearer token to URL (scopes write, events:write,
	// analysis and read).
	Token string
	// Controller is the rollout controller whose pods the service has
	// (ControllerArgoRollouts, the default, or ControllerFlagger): how
	// they are named and labelled, and which deploy examples judge the
	// stages (deploy/argo-rollouts' stage judge and gate, or deploy/flagger's
	// Canary webhook request and MetricTemplate).
	Controller string
	// Command is how the report names the command that made it; default
	// "levitated demo".
	Command string
	// AfterStage, if set, is called after each stage is judged, with the
	// running server's URL, before the rollout goes on (the CLI's --pause
	// waits for Enter there).
	AfterStage func(ctx context.Context, url string, run Scenario, stage Stage) error
}

// Stage is one judged canary stage.
type Stage struct {
	Weight     int
	Start, End time.Time
	// Canary and Baseline are the pods' error ratio and p99 latency since
	// the stage started; NaN when there is no data.
	CanaryErrorRatio, BaselineErrorRatio float64
	CanaryP99, BaselineP99               float64
	// GateErrorRatio is canary-stage-gate.yaml's query at the stage's end.
	GateErrorRatio float64
	// Score, Verdict and Metrics are the judge's answer.
	Score    float64
	Verdict  string
	Metrics  []MetricVerdict
	Decision string
}

// MetricVerdict is the judge's classification of one metric.
type MetricVerdict struct {
	Name, Classification, Explanation string
}

// Result is one run.
type Result struct {
	Scenario Scenario
	Stages   []Stage
	// Outcome is OutcomePromoted, OutcomeRolledBack or OutcomePaused.
	Outcome string
	// Start and End bound the simulated time.
	Start, End time.Time
	// Charts and Events feed the report.
	Charts []Chart
	Events []storedEvent
}

// Run plays the scenarios one after the other, each on its own levitated,
// and writes the report.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	if opts.Scenarios == nil {
		opts.Scenarios = Scenarios
	}
	if opts.ListenAddress == "" {
		opts.ListenAddress = "127.0.0.1:0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch opts.Controller {
	case "":
		opts.Controller = ControllerArgoRollouts
	case ControllerArgoRollouts, ControllerFlagger:
	default:
		return nil, fmt.Errorf("controller: want %s, got %q", strings.Join(Controllers, " or "), opts.Controller)
	}
	ex, err := loadExamples(opts.Controller)
	if err != nil {
		return nil, err
	}
	if opts.Command == "" {
		opts.Command = "levitated demo"
	}
	var results []Result
	for i, sc := range opts.Scenarios {
		o := opts
		if opts.URL != "" {
			// On one server, run i of n ends (n-1-i) run lengths before now.
			end := opts.Now()
			back := time.Duration(len(opts.Scenarios)-1-i) * (runLength + stageLen)
			o.Now = func() time.Time { return end.Add(-back) }
		}
		r, err := runScenario(ctx, o, ex, sc, opts.Seed+uint64(i))
		if err != nil {
			return results, fmt.Errorf("run %s: %w", sc.Name, err)
		}
		results = append(results, r)
	}
	if opts.Report != "" {
		if err := writeReport(opts.Report, opts.Command, results); err != nil {
			return results, err
		}
		fmt.Fprintf(opts.Out, "\nreport: %s\n", opts.Report)
	}
	return results, nil
}

// runScenario starts a levitated, plays one rollout against it and stops it.
func runScenario(ctx context.Context, opts Options, ex examples, sc Scenario, seed uint64) (res Result, err error) {
	if opts.URL != "" {
		u := strings.TrimRight(opts.URL, "/")
		fmt.Fprintf(opts.Out, "\n== %s: into levitated at %s\n", sc.Title, u)
		c := &client{base: u, http: &http.Client{Timeout: time.Minute}, token: opts.Token}
		r := &rollout{c: c, opts: opts, ex: ex, sc: sc, url: u, traffic: newTraffic(seed, opts.Controller)}
		return r.play(ctx)
	}
	dir := ""
	if opts.DataDir != "" {
		dir = opts.DataDir + string(os.PathSeparator) + sc.Name
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, fmt.Errorf("data dir: %w", err)
		}
	} else {
		dir, err = os.MkdirTemp("", "levitated-demo-"+sc.Name+"-")
		if err != nil {
			return res, fmt.Errorf("data dir: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	so := server.DefaultOptions()
	so.ListenAddress = opts.ListenAddress
	so.DataDir = dir
	so.Registry = prometheus.NewRegistry()
	so.Logger = opts.Logger
	so.ShutdownTimeout = 5 * time.Second
	srv, err := server.New(so)
	if err != nil {
		return res, fmt.Errorf("start levitated: %w", err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	defer func() {
		stop()
		if serr := <-done; serr != nil && err == nil {
			err = fmt.Errorf("stop levitated: %w", serr)
		}
	}()
	u := "http://" + srv.Addr().String()
	fmt.Fprintf(opts.Out, "\n== %s: levitated at %s (data in %s)\n", sc.Title, u, dir)
	r := &rollout{c: &client{base: u, http: &http.Client{Timeout: time.Minute}}, opts: opts, ex: ex, sc: sc, url: u, traffic: newTraffic(seed, opts.Controller)}
	return r.play(ctx)
}

// rollout is one run in progress.
type rollout struct {
	c       *client
	opts    Options
	ex      examples
	sc      Scenario
	url     string
	traffic *traffic
}

func (r *rollout) play(ctx context.Context) (Result, error) {
	res := Result{Scenario: r.sc}
	end := r.opts.Now().Truncate(tick)
	t := end.Add(-warmup - time.Duration(len(Weights))*stageLen - cooldown)
	res.Start = t

	// Stable traffic, then the rollout starts.
	if err := r.generate(ctx, t, t.Add(warmup)); err != nil {
		return res, err
	}
	t = t.Add(warmup)
	deployAttrs := r.attrs("revision", newVersion)
	if err := r.c.event(ctx, event{Name: "deploy", State: "start", Timestamp: ts(t), Attributes: deployAttrs,
		Text: fmt.Sprintf("canary rollout of %s %s", service, newVersion)}); err != nil {
		return res, err
	}
	r.traffic.startCanary()

	res.Outcome = OutcomePromoted
	for i, w := range Weights {
		stage, err := r.stage(ctx, t, w, i == len(Weights)-1)
		if err != nil {
			return res, err
		}
		res.Stages = append(res.Stages, stage)
		r.printStage(stage, i == 0)
		t = stage.End
		if r.opts.AfterStage != nil {
			if err := r.opts.AfterStage(ctx, r.url, r.sc, stage); err != nil {
				return res, err
			}
		}
		if stage.Decision == DecisionRollback {
			res.Outcome = OutcomeRolledBack
			break
		}
		if stage.Decision == DecisionPause {
			res.Outcome = OutcomePaused
			break
		}
	}

	switch res.Outcome {
	case OutcomePromoted:
		r.traffic.promote()
	case OutcomeRolledBack:
		r.traffic.rollback()
	}
	stopAttrs := map[string]string{"result": res.Outcome}
	for k, v := range deployAttrs {
		stopAttrs[k] = v
	}
	if err := r.c.event(ctx, event{Name: "deploy", State: "stop", Timestamp: ts(t), Attributes: stopAttrs}); err != nil {
		return res, err
	}
	if res.Outcome != OutcomePaused {
		// The service goes on serving until now (a rollback ends the
		// rollout early), so the latest samples are current.
		until := t.Add(cooldown)
		if until.Before(end) {
			until = end
		}
		if err := r.generate(ctx, t, until); err != nil {
			return res, err
		}
		t = until
	}
	res.End = t
	fmt.Fprintf(r.opts.Out, "-> %s\n", strings.ToUpper(res.Outcome))

	var err error
	if res.Charts, err = r.charts(ctx, res.Start, res.End); err != nil {
		return res, err
	}
	if res.Events, err = r.c.events(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// stage runs one canary stage from start: the start event, the stage's
// traffic, the stop event, then the judge and the figures.
func (r *rollout) stage(ctx context.Context, start time.Time, weight int, last bool) (Stage, error) {
	s := Stage{Weight: weight, Start: start, End: start.Add(stageLen)}
	attrs := r.attrs("weight", fmt.Sprint(weight))
	if err := r.c.event(ctx, event{Name: "canary-step", State: "start", Timestamp: ts(s.Start), Attributes: attrs,
		Text: fmt.Sprintf("%s canary at %d %%", service, weight)}); err != nil {
		return s, err
	}
	r.traffic.weight = weight
	if r.sc.RegressAt > 0 && weight >= r.sc.RegressAt {
		r.traffic.canaryH = regressed
	}
	if err := r.generate(ctx, s.Start, s.End); err != nil {
		return s, err
	}
	if err := r.c.event(ctx, event{Name: "canary-step", State: "stop", Timestamp: ts(s.End), Attributes: attrs}); err != nil {
		return s, err
	}

	// The judge, over the stage's window (the latest canary-step of the
	// service), with canary-stage-judge.yaml's request (or the Flagger
	// Canary webhook's).
	a, err := r.c.analyze(ctx, r.ex.judgeBody)
	if err != nil {
		return s, fmt.Errorf("judge stage %d %%: %w", weight, err)
	}
	s.Score, s.Verdict = a.Score, a.Verdict
	for _, m := range a.Metrics {
		s.Metrics = append(s.Metrics, MetricVerdict{Name: m.Name, Classification: m.Classification, Explanation: m.Explanation})
	}
	switch a.Verdict {
	case "Pass":
		s.Decision = DecisionNext
		if last {
			s.Decision = DecisionPromote
		}
	case "Fail":
		s.Decision = DecisionRollback
	case "Marginal":
		s.Decision = DecisionPause
	default:
		return s, fmt.Errorf("judge stage %d %%: unknown verdict %q", weight, a.Verdict)
	}
	// Record the verdict beside the stage, as a pipeline would.
	if err := r.c.event(ctx, event{Name: "canary-verdict", State: "stop", Timestamp: ts(s.End), Text: a.Reason,
		Attributes: map[string]string{"service": service, "weight": fmt.Sprint(weight), "verdict": a.Verdict, "score": fmt.Sprint(a.Score)}}); err != nil {
		return s, err
	}

	// The figures, as the dashboard's canary-stage panels and the stage
	// gate compute them, at the stage's end.
	for _, q := range []struct {
		query string
		into  *float64
	}{
		{errorRatioSinceStage(r.ex.canary), &s.CanaryErrorRatio},
		{errorRatioSinceStage(r.ex.baseline), &s.BaselineErrorRatio},
		{p99SinceStage(r.ex.canary), &s.CanaryP99},
		{p99SinceStage(r.ex.baseline), &s.BaselineP99},
		{r.ex.gateQuery, &s.GateErrorRatio},
	} {
		v, err := r.c.query(ctx, q.query, s.End)
		if err != nil {
			return s, err
		}
		*q.into = nan
		if len(v) == 1 {
			*q.into = v[0].Value
		}
	}
	return s, nil
}

// attrs are a change event's attributes: the service, as its metrics name
// it, and kv. With Argo Rollouts also app (every pod has app=checkout);
// not with Flagger, whose primary pods have app=checkout-primary, so that
// a window with app=checkout would not apply to the primary's series (a
// window applies to the series that share its labels' values).
func (r *rollout) attrs(kv ...string) map[string]string {
	m := map[string]string{"service": service}
	if r.opts.Controller != ControllerFlagger {
		m["app"] = service
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// generate writes the traffic of [from, to) through remote write, a minute
// per request, as an agent would send it.
func (r *rollout) generate(ctx context.Context, from, to time.Time) error {
	for t := from; t.Before(to); t = t.Add(time.Minute) {
		r.traffic.run(t, minTime(t.Add(time.Minute), to))
		if err := r.c.write(ctx, r.traffic.flush()); err != nil {
			return err
		}
	}
	return nil
}

func (r *rollout) printStage(s Stage, header bool) {
	if header {
		fmt.Fprintf(r.opts.Out, "%-6s  %-11s  %-11s  %-9s  %-9s  %-5s  %-8s  %s\n",
			"stage", "errors cnry", "errors base", "p99 cnry", "p99 base", "score", "verdict", "decision")
	}
	fmt.Fprintf(r.opts.Out, "%-6s  %-11s  %-11s  %-9s  %-9s  %-5.0f  %-8s  %s\n",
		fmt.Sprintf("%d %%", s.Weight), pct(s.CanaryErrorRatio), pct(s.BaselineErrorRatio), ms(s.CanaryP99), ms(s.BaselineP99), s.Score, s.Verdict, s.Decision)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
