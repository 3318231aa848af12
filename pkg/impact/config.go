package impact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Config says which changes are judged and on which signals. The zero
// fields of a loaded file take the values of DefaultConfig.
type Config struct {
	// Events are the event names judged. Default deploy, canary-step,
	// rollout, config-change.
	Events []string
	// ServiceAttributes are the attributes naming the changed service, the
	// first present wins. Default service, service_name. A change with none
	// of them is not judged.
	ServiceAttributes []string
	// Attributes are the attributes, beyond service, namespace and
	// event_name, that signal templates may use.
	Attributes []string
	// Delay is how long after a window's stop it is judged, so that late
	// samples arrive first. Default 1m.
	Delay time.Duration
	// PointWindow is, for a point event, the span after it compared with
	// the same span before it. Default 10m.
	PointWindow time.Duration
	// Grace, if set, judges a change again Grace after its end (a window's
	// stop, a point event's PointWindow after it), once, when its first
	// judgement came before then: if the figures changed (late data), the
	// new judgement is recorded and supersedes the first. Longer than
	// Delay; 0 (the default) turns it off.
	Grace time.Duration
	// OpenAfter, if set, judges a window still open once, OpenAfter after
	// its start, over [start, start+OpenAfter): an early judgement, which
	// the initial one supersedes once the window closes. 0 (the default)
	// turns it off.
	OpenAfter time.Duration
	// Horizon is how far back the scheduler looks for changes not yet
	// judged (the longest outage it catches up on). Default 24h.
	Horizon time.Duration
	// Pass and Marginal are the score thresholds. Default 95 and 75.
	Pass, Marginal float64
	// Traffic, if set, is the minimum of requests a comparison needs on
	// each side; with fewer it does not count (inconclusive when no
	// comparison counts).
	Traffic *Traffic
	// Signals are judged for every service without its own entry in
	// Services.
	Signals []Signal
	// Split, if set, also judges the canary against the baseline.
	Split *Split
	// Services override Signals and Split per service.
	Services map[string]ServiceConfig

	// positions are the templates written in the file, where they are:
	// checked for data at load (CheckData).
	positions []position
}

// ServiceConfig is one service's own signals and split.
type ServiceConfig struct {
	Signals []Signal
	Split   *Split
}

// Signal is one RED signal: a PromQL template over the change's
// attributes ($service, ${version}), judged with a direction.
type Signal struct {
	Name string
	// Query is the PromQL template. $name and ${name} are replaced by the
	// attribute's value, escaped for a double-quoted PromQL string; $$ is
	// a literal $.
	Query string
	// Direction is "increase" (a rise is bad), "decrease" or "either".
	Direction string
	// Critical makes the change fail when this signal fails.
	Critical bool
	// MinSamples is the fewest points each side needs for the signal to be
	// judged; with fewer it is left out. Default 10.
	MinSamples int
	// AllowedIncrease (AllowedDecrease), if set, is the ratio of the means
	// (after over before, canary over baseline) a significant rise (fall)
	// must reach to fail the signal: the judge's effect size, so that a
	// real but small shift, such as the drift of a day, does not fail a
	// change. CriticalIncrease (CriticalDecrease) is the ratio beyond which
	// a critical signal fails the whole change.
	AllowedIncrease, AllowedDecrease   float64
	CriticalIncrease, CriticalDecrease float64
}

// Traffic is a template of a service's requests per second, and the fewest
// requests each side of a comparison needs.
type Traffic struct {
	Query       string
	MinRequests float64
}

// Split names how a service's series tell the canary from the baseline:
// Label="Baseline" and Label="Canary", where the values are templates over
// the change's attributes (rollouts_pod_template_hash="$stable_hash").
type Split struct {
	Label            string
	Baseline, Canary string
}

// Defaults of Config.
const (
	DefaultDelay       = time.Minute
	DefaultPointWindow = 10 * time.Minute
	DefaultHorizon     = 24 * time.Hour
	DefaultMinSamples  = 10
	// DefaultMinRequests is the fewest requests each side of a comparison
	// needs: at a 1 % error ratio, 2500 requests hold about 25 errors;
	// with fewer, simulated healthy changes failed too often
	// (bench/RESULTS.md, "Change impact").
	DefaultMinRequests = 2500
)

// DefaultConfig judges deploys, canary steps, rollouts and config changes
// on the errors and latency of the two conventions services already emit:
// the Prometheus client's http_requests_total (code or status label) with
// http_request_duration_seconds, and OpenTelemetry's
// http_server_request_duration_seconds (http_response_status_code). A
// service emits one of them; the other's signals have no data and are left
// out.
func DefaultConfig() Config {
	return Config{
		Events:            []string{"deploy", "canary-step", "rollout", "config-change"},
		ServiceAttributes: []string{"service", "service_name"},
		Delay:             DefaultDelay,
		PointWindow:       DefaultPointWindow,
		Horizon:           DefaultHorizon,
		Pass:              95,
		Marginal:          75,
		Traffic: &Traffic{
			Query:       `sum(rate(http_requests_total{service="$service"}[1m])) or sum(rate(http_server_request_duration_seconds_count{job=~"(.+/)?$service"}[1m]))`,
			MinRequests: DefaultMinRequests,
		},
		Signals: []Signal{
			{
				Name:      "error-ratio",
				Query:     `(sum(rate(http_requests_total{service="$service",code=~"5.."}[1m])) or sum(rate(http_requests_total{service="$service",status=~"5.."}[1m])) or vector(0)) / sum(rate(http_requests_total{service="$service"}[1m]))`,
				Direction: "increase", Critical: true, MinSamples: DefaultMinSamples, AllowedIncrease: 1.25,
			},
			{
				Name:      "latency-p99",
				Query:     `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="$service"}[1m])))`,
				Direction: "increase", MinSamples: DefaultMinSamples, AllowedIncrease: 1.1,
			},
			{
				Name:      "otel-error-ratio",
				Query:     `(sum(rate(http_server_request_duration_seconds_count{job=~"(.+/)?$service",http_response_status_code=~"5.."}[1m])) or vector(0)) / sum(rate(http_server_request_duration_seconds_count{job=~"(.+/)?$service"}[1m]))`,
				Direction: "increase", Critical: true, MinSamples: DefaultMinSamples, AllowedIncrease: 1.25,
			},
			{
				Name:      "otel-latency-p99",
				Query:     `histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{job=~"(.+/)?$service"}[1m])))`,
				Direction: "increase", MinSamples: DefaultMinSamples, AllowedIncrease: 1.1,
			},
		},
	}
}

// For returns the signals and split of a service.
func (c *Config) For(service string) ([]Signal, *Split) {
	if s, ok := c.Services[service]; ok {
		return s.Signals, s.Split
	}
	return c.Signals, c.Split
}

// Judged reports whether changes named name are judged.
func (c *Config) Judged(name string) bool { return slices.Contains(c.Events, name) }

// ServiceOf returns the changed service named by attrs, and the attribute
// that named it.
func (c *Config) ServiceOf(attrs map[string]string) (service, attr string) {
	for _, a := range c.ServiceAttributes {
		if v := attrs[a]; v != "" {
			return v, a
		}
	}
	return "", ""
}

// builtinVars are the template variables every change has.
var builtinVars = []string{"service", "namespace", "event_name"}

var varPattern = regexp.MustCompile(`\$(\$|\{[a-zA-Z_][a-zA-Z0-9_]*\}|[a-zA-Z_][a-zA-Z0-9_]*)`)

// expand replaces the variables of tmpl by their values, escaped for a
// double-quoted PromQL string. A variable without a value is an error
// naming it.
func expand(tmpl string, vars map[string]string) (string, error) {
	var missing []string
	out := varPattern.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := strings.Trim(m[1:], "{}")
		if name == "$" {
			return "$"
		}
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
		return r.Replace(v)
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("the change has no attribute %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// templateVars lists the variables tmpl uses.
func templateVars(tmpl string) []string {
	var out []string
	for _, m := range varPattern.FindAllString(tmpl, -1) {
		if name := strings.Trim(m[1:], "{}"); name != "$" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// LoadConfig reads a YAML configuration file (docs/impact.md). Every error
// names the file, the line and the field: a template that does not parse,
// an attribute it uses that is not declared, an unknown field.
func LoadConfig(path string, p parser.Parser) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("impact config: %w", err)
	}
	return ParseConfig(path, b, p)
}

// file is the YAML shape of a Config.
type file struct {
	Events struct {
		Names             []string       `yaml:"names"`
		ServiceAttributes []string       `yaml:"service_attributes"`
		Delay             model.Duration `yaml:"delay"`
		PointWindow       model.Duration `yaml:"point_window"`
		Horizon           model.Duration `yaml:"horizon"`
		Grace             model.Duration `yaml:"grace"`
		OpenAfter         model.Duration `yaml:"open_after"`
	} `yaml:"events"`
	Attributes []string `yaml:"attributes"`
	Thresholds *struct {
		Pass     float64 `yaml:"pass"`
		Marginal float64 `yaml:"marginal"`
	} `yaml:"thresholds"`
	Traffic  *fileTraffic           `yaml:"traffic"`
	Signals  []fileSignal           `yaml:"signals"`
	Split    *fileSplit             `yaml:"split"`
	Services map[string]fileService `yaml:"services"`
}

type fileService struct {
	Signals []fileSignal `yaml:"signals"`
	Split   *fileSplit   `yaml:"split"`
}

type fileSignal struct {
	Name       string `yaml:"name"`
	Query      string `yaml:"query"`
	Direction  string `yaml:"direction"`
	Critical   bool   `yaml:"critical"`
	MinSamples *int   `yaml:"min_samples"`

	AllowedIncrease  float64 `yaml:"allowed_increase"`
	AllowedDecrease  float64 `yaml:"allowed_decrease"`
	CriticalIncrease float64 `yaml:"critical_increase"`
	CriticalDecrease float64 `yaml:"critical_decrease"`
	line             int
}

func (s *fileSignal) UnmarshalYAML(n *yaml.Node) error {
	type plain fileSignal
	var p plain
	if err := decodeStrict(n, &p); err != nil {
		return err
	}
	*s = fileSignal(p)
	s.line = n.Line
	return nil
}

type fileTraffic struct {
	Query       string   `yaml:"query"`
	MinRequests *float64 `yaml:"min_requests"`
	line        int
}

func (s *fileTraffic) UnmarshalYAML(n *yaml.Node) error {
	type plain fileTraffic
	var p plain
	if err := decodeStrict(n, &p); err != nil {
		return err
	}
	*s = fileTraffic(p)
	s.line = n.Line
	return nil
}

type fileSplit struct {
	Label    string `yaml:"label"`
	Baseline string `yaml:"baseline"`
	Canary   string `yaml:"canary"`
	line     int
}

func (s *fileSplit) UnmarshalYAML(n *yaml.Node) error {
	type plain fileSplit
	var p plain
	if err := decodeStrict(n, &p); err != nil {
		return err
	}
	*s = fileSplit(p)
	s.line = n.Line
	return nil
}

// decodeStrict decodes a node refusing unknown fields (Node.Decode does not
// apply the decoder's KnownFields).
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(v); err != nil {
		return &lineError{msgs: yamlMessages(err, n.Line-1)}
	}
	return nil
}

// lineError is a YAML error whose messages already carry their lines.
type lineError struct{ msgs []string }

func (e *lineError) Error() string { return strings.Join(e.msgs, "; ") }

var (
	lineRe   = regexp.MustCompile(`^line (\d+): (.*)$`)
	inTypeRe = regexp.MustCompile(`^field (\S+) not found in type `)
)

// yamlMessages turns a yaml.v3 error into "LINE: message" strings, with
// offset added to the lines.
func yamlMessages(err error, offset int) []string {
	var lines []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		lines = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var out []string
	for _, l := range lines {
		var le *lineError
		if errors.As(err, &le) {
			return le.msgs
		}
		l = strings.TrimSpace(l)
		if m := lineRe.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			msg := m[2]
			if f := inTypeRe.FindStringSubmatch(msg); f != nil {
				msg = "unknown field " + f[1]
			}
			out = append(out, fmt.Sprintf("%d: %s", n+offset, msg))
			continue
		}
		out = append(out, " "+l)
	}
	return out
}

// ParseConfig parses a YAML configuration; name is the file name used in
// errors.
func ParseConfig(name string, b []byte, p parser.Parser) (Config, error) {
	var f file
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		var le *lineError
		msgs := yamlMessages(err, 0)
		if errors.As(err, &le) {
			msgs = le.msgs
		}
		return Config{}, fmt.Errorf("%s:%s", name, strings.Join(msgs, "; "+name+":"))
	}
	c := DefaultConfig()
	fail := func(line int, field, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", name, line, field, fmt.Sprintf(format, args...))
	}
	if len(f.Events.Names) > 0 {
		c.Events = f.Events.Names
	}
	if len(f.Events.ServiceAttributes) > 0 {
		c.ServiceAttributes = f.Events.ServiceAttributes
	}
	for _, d := range []struct {
		v   model.Duration
		dst *time.Duration
	}{{f.Events.Delay, &c.Delay}, {f.Events.PointWindow, &c.PointWindow}, {f.Events.Horizon, &c.Horizon}, {f.Events.Grace, &c.Grace}, {f.Events.OpenAfter, &c.OpenAfter}} {
		if d.v > 0 {
			*d.dst = time.Duration(d.v)
		}
	}
	if c.Grace > 0 && c.Grace <= c.Delay {
		return Config{}, fmt.Errorf("%s: events.grace: %s is not longer than events.delay (%s): the second judgement must come after the first", name, c.Grace, c.Delay)
	}
	c.Attributes = f.Attributes
	for i, a := range c.Attributes {
		if !model.LabelName(a).IsValidLegacy() {
			return Config{}, fmt.Errorf("%s: attributes[%d]: %q is not an attribute name ([a-zA-Z_][a-zA-Z0-9_]*)", name, i, a)
		}
	}
	if f.Thresholds != nil {
		c.Pass, c.Marginal = f.Thresholds.Pass, f.Thresholds.Marginal
		if !(c.Pass >= 0 && c.Pass <= 100) || !(c.Marginal >= 0 && c.Marginal <= c.Pass) {
			return Config{}, fmt.Errorf("%s: thresholds: want 0 <= marginal <= pass <= 100, got pass %v, marginal %v", name, c.Pass, c.Marginal)
		}
	}
	known := append(slices.Clone(builtinVars), c.Attributes...)
	signals := func(field string, fs []fileSignal) ([]Signal, error) {
		var out []Signal
		seen := map[string]bool{}
		for i, s := range fs {
			f := fmt.Sprintf("%s[%d]", field, i)
			switch {
			case s.Name == "":
				return nil, fail(s.line, f+".name", "is required")
			case seen[s.Name]:
				return nil, fail(s.line, f+".name", "%q is used by another signal", s.Name)
			case strings.TrimSpace(s.Query) == "":
				return nil, fail(s.line, f+".query", "is required: a PromQL template")
			}
			seen[s.Name] = true
			for _, v := range templateVars(s.Query) {
				if !slices.Contains(known, v) {
					return nil, fail(s.line, f+".query", "uses $%s, which is not an attribute the configuration declares (declare it under attributes:, or use one of %s)", v, strings.Join(known, ", "))
				}
			}
			vars := map[string]string{}
			for _, k := range known {
				vars[k] = "x"
			}
			q, _ := expand(s.Query, vars)
			if _, err := p.ParseExpr(q); err != nil {
				return nil, fail(s.line, f+".query", "PromQL does not parse: %v", err)
			}
			switch s.Direction {
			case "":
				s.Direction = "increase"
			case "increase", "decrease", "either":
			default:
				return nil, fail(s.line, f+".direction", "%q is not increase, decrease or either", s.Direction)
			}
			minSamples := DefaultMinSamples
			if s.MinSamples != nil {
				if minSamples = *s.MinSamples; minSamples < 1 {
					return nil, fail(s.line, f+".min_samples", "%d is below 1", minSamples)
				}
			}
			for _, r := range []struct {
				f string
				v float64
			}{{"allowed_increase", s.AllowedIncrease}, {"allowed_decrease", s.AllowedDecrease}, {"critical_increase", s.CriticalIncrease}, {"critical_decrease", s.CriticalDecrease}} {
				if r.v < 0 || math.IsInf(r.v, 0) || math.IsNaN(r.v) {
					return nil, fail(s.line, f+"."+r.f, "%v is not a ratio above 0", r.v)
				}
			}
			c.positions = append(c.positions, position{file: name, line: s.line, field: f + ".query", query: s.Query})
			out = append(out, Signal{Name: s.Name, Query: s.Query, Direction: s.Direction, Critical: s.Critical, MinSamples: minSamples,
				AllowedIncrease: s.AllowedIncrease, AllowedDecrease: s.AllowedDecrease, CriticalIncrease: s.CriticalIncrease, CriticalDecrease: s.CriticalDecrease})
		}
		return out, nil
	}
	split := func(field string, s *fileSplit) (*Split, error) {
		if s == nil {
			return nil, nil
		}
		if !model.LabelName(s.Label).IsValidLegacy() {
			return nil, fail(s.line, field+".label", "%q is not a label name", s.Label)
		}
		for _, v := range []struct{ f, t string }{{"baseline", s.Baseline}, {"canary", s.Canary}} {
			if v.t == "" {
				return nil, fail(s.line, field+"."+v.f, "is required: the label value (a template) of this side")
			}
			for _, x := range templateVars(v.t) {
				if !slices.Contains(known, x) {
					return nil, fail(s.line, field+"."+v.f, "uses $%s, which is not an attribute the configuration declares", x)
				}
			}
		}
		if s.Baseline == s.Canary {
			return nil, fail(s.line, field+".canary", "is the baseline's value %q", s.Canary)
		}
		return &Split{Label: s.Label, Baseline: s.Baseline, Canary: s.Canary}, nil
	}
	checkTemplate := func(line int, field, tmpl string) error {
		for _, v := range templateVars(tmpl) {
			if !slices.Contains(known, v) {
				return fail(line, field, "uses $%s, which is not an attribute the configuration declares (declare it under attributes:, or use one of %s)", v, strings.Join(known, ", "))
			}
		}
		vars := map[string]string{}
		for _, k := range known {
			vars[k] = "x"
		}
		q, _ := expand(tmpl, vars)
		if _, err := p.ParseExpr(q); err != nil {
			return fail(line, field, "PromQL does not parse: %v", err)
		}
		return nil
	}
	if t := f.Traffic; t != nil {
		if t.Query == "" && t.MinRequests != nil && *t.MinRequests == 0 {
			c.Traffic = nil // traffic: {min_requests: 0} turns the check off
		} else {
			if t.Query != "" {
				if err := checkTemplate(t.line, "traffic.query", t.Query); err != nil {
					return Config{}, err
				}
				c.positions = append(c.positions, position{file: name, line: t.line, field: "traffic.query", query: t.Query})
				c.Traffic.Query = t.Query
			}
			if t.MinRequests != nil {
				if !(*t.MinRequests >= 0) {
					return Config{}, fail(t.line, "traffic.min_requests", "%v is below 0", *t.MinRequests)
				}
				c.Traffic.MinRequests = *t.MinRequests
			}
		}
	}
	var err error
	if len(f.Signals) > 0 {
		if c.Signals, err = signals("signals", f.Signals); err != nil {
			return Config{}, err
		}
	}
	if c.Split, err = split("split", f.Split); err != nil {
		return Config{}, err
	}
	for svc, s := range f.Services {
		sc := ServiceConfig{Signals: c.Signals}
		if len(s.Signals) > 0 {
			if sc.Signals, err = signals("services."+svc+".signals", s.Signals); err != nil {
				return Config{}, err
			}
		}
		sc.Split = c.Split
		if s.Split != nil {
			if sc.Split, err = split("services."+svc+".split", s.Split); err != nil {
				return Config{}, err
			}
		}
		if c.Services == nil {
			c.Services = map[string]ServiceConfig{}
		}
		c.Services[svc] = sc
	}
	return c, nil
}
