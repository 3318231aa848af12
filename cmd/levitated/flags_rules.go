package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/ruler"
	"github.com/levitated/levitated/pkg/server"
)

// addRulesFlags binds the rule and Alertmanager flags (docs/rules.md) to
// o, under Prometheus' names where Prometheus has the flag.
func addRulesFlags(fs *flag.FlagSet, o *server.Options) {
	r := &o.Rules
	fs.Func("rules.file", "rule `file` or glob of the default tenant, in Prometheus' format (repeatable, as Prometheus' rule_files)", func(s string) error {
		r.Files = append(r.Files, s)
		return nil
	})
	fs.StringVar(&r.TenantDir, "rules.tenant-dir", r.TenantDir,
		"`directory` with one directory per tenant holding that tenant's rule files (DIR/<tenant>/*.yml)")
	fs.DurationVar(&r.EvaluationInterval, "rules.evaluation-interval", r.EvaluationInterval,
		"how often a rule group without its own interval is evaluated (Prometheus' global evaluation_interval)")
	fs.DurationVar(&r.OutageTolerance, "rules.alert.for-outage-tolerance", r.OutageTolerance,
		"max time to tolerate levitated being down when restoring the 'for' state of alerts")
	fs.DurationVar(&r.ForGracePeriod, "rules.alert.for-grace-period", r.ForGracePeriod,
		"minimum duration between an alert's restored 'for' state and it firing")
	fs.DurationVar(&r.ResendDelay, "rules.alert.resend-delay", r.ResendDelay,
		"minimum time to wait before resending an alert to Alertmanager")
	fs.DurationVar(&r.ChangeWindow, "rules.alert.change-window", r.ChangeWindow,
		"an alert that starts firing during a change event's window, or this long after it, names the change in its annotations; negative turns it off")
	fs.Func("alertmanager.url", "`URL` of an Alertmanager to send alerts to (repeatable; scheme://[user:password@]host:port[/prefix], API v2)", func(s string) error {
		r.AlertmanagerURLs = append(r.AlertmanagerURLs, s)
		return nil
	})
	fs.StringVar(&r.AlertingConfigFile, "alertmanager.config-file", r.AlertingConfigFile,
		"Prometheus configuration `file` with only an alerting section (alertmanagers with static_configs, TLS, basic auth, bearer tokens, relabelling) and global.external_labels; re-read on reload")
	fs.IntVar(&r.NotificationQueueCapacity, "alertmanager.notification-queue-capacity", r.NotificationQueueCapacity,
		"alerts queued for Alertmanager before the oldest are dropped")
	fs.StringVar(&r.ExternalURL, "web.external-url", r.ExternalURL,
		"`URL` under which levitated is reached, for the generatorURL of alerts and links to changes; default http://<listen-address>")
}

// runRulesCheck is `levitated rules check FILE...`: each file is parsed as
// the ruler loads it (like promtool check rules). Exit 1 if any is bad.
func runRulesCheck(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" || len(args) < 2 {
		fmt.Fprintln(stderr, "usage: levitated rules check FILE...")
		return 2
	}
	p := promql.NewParser()
	logger := slog.New(slog.DiscardHandler)
	code := 0
	for _, f := range args[1:] {
		fmt.Fprintf(stdout, "Checking %s\n", f)
		c := ruler.CheckFile(f, p, logger)
		if len(c.Errs) > 0 {
			fmt.Fprintln(stderr, "  FAILED:")
			for _, err := range c.Errs {
				fmt.Fprintln(stderr, err)
			}
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "  SUCCESS: %d rules found\n", c.Rules)
	}
	return code
}
