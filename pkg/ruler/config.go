package ruler

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/levitated/levitated/pkg/tenant"
)

// notifierTargets are the Alertmanagers of each alertmanager
// configuration, keyed as the notifier keys its sets ("config-N").
type notifierTargets = map[string][]*targetgroup.Group

// loadedConfig is everything Reload read, checked.
type loadedConfig struct {
	files          map[string][]string // tenant → its rule files
	alerting       *config.Config
	targets        notifierTargets
	externalLabels labels.Labels
}

func (c loadedConfig) fileCount() int {
	n := 0
	for _, fs := range c.files {
		n += len(fs)
	}
	return n
}

// loadConfig finds every tenant's rule files, parses each with Prometheus'
// rulefmt (YAML, expressions with p, templates, duplicate groups) and
// reads the Alertmanager configuration. It returns every error found.
func loadConfig(o Options, p parser.Parser, logger *slog.Logger) (loadedConfig, error) {
	var errs []error
	files, err := ruleFiles(o, logger)
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range files {
		for _, f := range t {
			if _, ferrs := parseRuleFile(f, p, logger); len(ferrs) > 0 {
				errs = append(errs, ferrs...)
			}
		}
	}
	alerting, targets, err := alertingConfig(o, logger)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return loadedConfig{}, &LoadError{Errs: errs}
	}
	return loadedConfig{
		files:          files,
		alerting:       alerting,
		targets:        targets,
		externalLabels: alerting.GlobalConfig.ExternalLabels,
	}, nil
}

// LoadError lists every problem found in the rule files and the alerting
// configuration; each names the file and, where it has one, the line.
type LoadError struct {
	Errs []error
}

func (e *LoadError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return "rules not loaded, the rules in force are kept: " + strings.Join(msgs, "; ")
}

// Unwrap returns the errors.
func (e *LoadError) Unwrap() []error { return e.Errs }

// parseRuleFile parses one rule file as Prometheus does (unknown fields
// refused); each error names the file and, for YAML and rule errors, the
// line and column.
func parseRuleFile(file string, p parser.Parser, logger *slog.Logger) (*rulefmt.RuleGroups, []error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, []error{fmt.Errorf("rule file: %w", err)}
	}
	rgs, errs := rulefmt.Parse(b, false, model.UTF8Validation, p, logger)
	if len(errs) == 0 {
		return rgs, nil
	}
	// rulefmt reports a YAML error twice, a repeated group at line 0 and
	// a template error without a line: say each once, with its line.
	lines := ruleLines(b)
	var out []error
	seen := map[string]bool{}
	for _, err := range errs {
		msg := err.Error()
		var rerr *rulefmt.Error
		switch {
		case errors.As(err, &rerr) && !startsWithLine(msg):
			if l, ok := lines.rule(rerr.Group, rerr.Rule); ok {
				err = fmt.Errorf("%s: %w", l, err)
			}
		case strings.HasPrefix(msg, "0:0: groupname: "):
			name := strings.TrimSuffix(strings.TrimPrefix(msg, "0:0: groupname: "), " is repeated in the same file")
			if n, uerr := strconv.Unquote(name); uerr == nil {
				if l, ok := lines.repeat(n); ok {
					err = errors.New(l + strings.TrimPrefix(msg, "0:0"))
				}
			}
		}
		if msg := err.Error(); !seen[msg] {
			seen[msg] = true
			out = append(out, fmt.Errorf("%s: %w", file, err))
		}
	}
	return nil, out
}

// startsWithLine reports whether msg starts with "line:column:".
func startsWithLine(msg string) bool {
	i := strings.IndexByte(msg, ':')
	if i <= 0 {
		return false
	}
	_, err := strconv.Atoi(msg[:i])
	return err == nil
}

// lineIndex is where each group (by name, each occurrence) and each of
// its rules start in a rule file.
type lineIndex map[string][]groupLines

type groupLines struct {
	at    string   // "line:column" of the group
	rules []string // "line:column" of each rule
}

// ruleLines indexes the groups and rules of a rule file; a file that is
// not YAML gives an empty index.
func ruleLines(b []byte) lineIndex {
	idx := lineIndex{}
	var doc yamlv3.Node
	if yamlv3.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return idx
	}
	groups := mapValue(doc.Content[0], "groups")
	if groups == nil {
		return idx
	}
	pos := func(n *yamlv3.Node) string { return fmt.Sprintf("%d:%d", n.Line, n.Column) }
	for _, g := range groups.Content {
		name := mapValue(g, "name")
		if name == nil {
			continue
		}
		gl := groupLines{at: pos(g)}
		if rules := mapValue(g, "rules"); rules != nil {
			for _, r := range rules.Content {
				gl.rules = append(gl.rules, pos(r))
			}
		}
		idx[name.Value] = append(idx[name.Value], gl)
	}
	return idx
}

// rule is where rule i (from 1) of the first group named g starts.
func (idx lineIndex) rule(g string, i int) (string, bool) {
	gs := idx[g]
	if len(gs) == 0 || i < 1 || i > len(gs[0].rules) {
		return "", false
	}
	return gs[0].rules[i-1], true
}

// repeat is where the second group named g starts.
func (idx lineIndex) repeat(g string) (string, bool) {
	if len(idx[g]) < 2 {
		return "", false
	}
	return idx[g][1].at, true
}

func mapValue(n *yamlv3.Node, key string) *yamlv3.Node {
	if n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// ruleFiles finds the rule files of each tenant: Files for the default
// tenant, and TenantDir/<tenant>/*.{yml,yaml}. Paths are absolute, sorted
// and without duplicates. A pattern without glob characters must name an
// existing file; a glob may match nothing (as Prometheus' rule_files).
func ruleFiles(o Options, logger *slog.Logger) (map[string][]string, error) {
	out := map[string][]string{}
	var errs []error
	add := func(t, f string) {
		abs, err := filepath.Abs(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule file %s: %w", f, err))
			return
		}
		if !slices.Contains(out[t], abs) {
			out[t] = append(out[t], abs)
		}
	}
	for _, pat := range o.Files {
		matches, err := filepath.Glob(pat)
		if err != nil {
			errs = append(errs, fmt.Errorf("--rules.file %q: %w", pat, err))
			continue
		}
		if len(matches) == 0 {
			if !hasMeta(pat) {
				errs = append(errs, fmt.Errorf("--rules.file %s: no such file", pat))
				continue
			}
			logger.Warn("rule file pattern matches no file", "pattern", pat)
		}
		for _, m := range matches {
			add(tenant.Default, m)
		}
	}
	if o.TenantDir != "" {
		entries, err := os.ReadDir(o.TenantDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("--rules.tenant-dir: %w", err))
		}
		for _, e := range entries {
			if !e.IsDir() {
				if !strings.HasPrefix(e.Name(), ".") {
					logger.Warn("rules tenant directory: not a directory, ignored", "path", filepath.Join(o.TenantDir, e.Name()))
				}
				continue
			}
			t := e.Name()
			if strings.HasPrefix(t, ".") {
				continue
			}
			if err := tenant.Validate(t); err != nil {
				errs = append(errs, fmt.Errorf("--rules.tenant-dir: directory %q does not name a tenant: %w", t, err))
				continue
			}
			for _, ext := range []string{"*.yml", "*.yaml"} {
				matches, err := filepath.Glob(filepath.Join(o.TenantDir, t, ext))
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, m := range matches {
					add(t, m)
				}
			}
		}
	}
	for t := range out {
		slices.Sort(out[t])
	}
	return out, errors.Join(errs...)
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// alertingConfig builds the notifier's configuration: the alerting section
// and external labels of AlertingConfigFile, then one Alertmanager
// configuration per AlertmanagerURLs entry. Only static_configs name
// Alertmanagers (levitated runs no service discovery).
func alertingConfig(o Options, logger *slog.Logger) (*config.Config, notifierTargets, error) {
	cfg := &config.Config{GlobalConfig: config.DefaultGlobalConfig}
	if o.AlertingConfigFile != "" {
		var err error
		if cfg, err = loadAlertingFile(o.AlertingConfigFile, logger); err != nil {
			return nil, nil, err
		}
	}
	targets := notifierTargets{}
	var errs []error
	for i, am := range cfg.AlertingConfig.AlertmanagerConfigs {
		var groups []*targetgroup.Group
		for _, sd := range am.ServiceDiscoveryConfigs {
			static, ok := sd.(discovery.StaticConfig)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: alerting.alertmanagers[%d]: %s_sd_configs: levitated runs no service discovery, name Alertmanagers with static_configs",
					o.AlertingConfigFile, i, sd.Name()))
				continue
			}
			for _, g := range static {
				g.Source = fmt.Sprint(len(groups))
				groups = append(groups, g)
			}
		}
		targets[fmt.Sprintf("config-%d", i)] = groups
	}
	for _, u := range o.AlertmanagerURLs {
		am, err := alertmanagerFromURL(u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key := fmt.Sprintf("config-%d", len(cfg.AlertingConfig.AlertmanagerConfigs))
		cfg.AlertingConfig.AlertmanagerConfigs = append(cfg.AlertingConfig.AlertmanagerConfigs, am)
		targets[key] = []*targetgroup.Group(am.ServiceDiscoveryConfigs[0].(discovery.StaticConfig))
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return cfg, targets, nil
}

// loadAlertingFile reads a Prometheus configuration file that may hold
// only global.external_labels and alerting, with Prometheus' own loader.
func loadAlertingFile(file string, logger *slog.Logger) (*config.Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--alertmanager.config-file: %w", err)
	}
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for k, v := range top {
		switch k {
		case "alerting":
		case "global":
			g, _ := v.(map[any]any)
			for gk := range g {
				if gk != "external_labels" {
					return nil, fmt.Errorf("%s: global.%v: only global.external_labels is read (evaluation interval: --rules.evaluation-interval)", file, gk)
				}
			}
		default:
			return nil, fmt.Errorf("%s: %s: only the alerting and global.external_labels sections are read; levitated does not scrape or forward", file, k)
		}
	}
	cfg, err := config.LoadFile(file, false, logger)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// alertmanagerFromURL is the Alertmanager configuration of one
// --alertmanager.url: scheme, host, path prefix and, from the user info,
// basic auth.
func alertmanagerFromURL(s string) (*config.AlertmanagerConfig, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--alertmanager.url %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--alertmanager.url %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("--alertmanager.url %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--alertmanager.url %q: a query or fragment is not allowed", s)
	}
	am := config.DefaultAlertmanagerConfig
	am.Scheme = u.Scheme
	am.PathPrefix = strings.TrimSuffix(u.Path, "/")
	if u.User != nil {
		pw, _ := u.User.Password()
		am.HTTPClientConfig.BasicAuth = &commoncfg.BasicAuth{Username: u.User.Username(), Password: commoncfg.Secret(pw)}
	}
	am.ServiceDiscoveryConfigs = discovery.Configs{discovery.StaticConfig{{
		Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(u.Host)}},
		Source:  "0",
	}}}
	return &am, nil
}

// FileCheck is what CheckFile found in one rule file.
type FileCheck struct {
	File   string
	Groups int
	Rules  int
	// Errs name the file and, where they have one, the line.
	Errs []error
}

// CheckFile parses a rule file as Reload does (levitated rules check,
// like promtool check rules).
func CheckFile(file string, p parser.Parser, logger *slog.Logger) FileCheck {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := FileCheck{File: file}
	rgs, errs := parseRuleFile(file, p, logger)
	if len(errs) > 0 {
		c.Errs = errs
		return c
	}
	c.Groups = len(rgs.Groups)
	for _, g := range rgs.Groups {
		c.Rules += len(g.Rules)
	}
	return c
}
