package main

import (
	"flag"
	"time"

	"github.com/prometheus/common/model"

	"github.com/levitated/levitated/pkg/server"
)

// addSecurityFlags binds the authentication, TLS and per-tenant limit
// flags (docs/security.md) to o.
func addSecurityFlags(fs *flag.FlagSet, o *server.Options) {
	fs.StringVar(&o.Security.WebConfigFile, "web.config.file", o.Security.WebConfigFile,
		"Prometheus web configuration `file` (web.yml): TLS (1.2 or later), client certificates, bcrypt basic-auth users, headers")
	fs.BoolVar(&o.Security.TrustedProxy, "auth.trusted-proxy", o.Security.TrustedProxy,
		"take the tenant from X-Scope-OrgID, with every scope: only behind a gateway that authenticates and sets it")
	fs.BoolVar(&o.Security.InsecureAllowUnauthenticatedRemoteAccess, server.InsecureFlag[2:], false,
		"INSECURE: listen on a non-loopback address although no token, user or client certificate is configured; anyone who can connect reads and writes")

	l := &o.Limits
	fs.StringVar(&l.OverridesFile, "limits.overrides-file", l.OverridesFile,
		"YAML `file` of per-tenant limits (overrides: {tenant: {ingestion_rate: ...}}), re-read when it changes")
	fs.Float64Var(&l.Defaults.IngestionRate, "limits.ingestion-rate", l.Defaults.IngestionRate,
		"samples per second each tenant may write; 0 is unlimited")
	fs.IntVar(&l.Defaults.IngestionBurstSize, "limits.ingestion-burst-size", l.Defaults.IngestionBurstSize,
		"samples a tenant may write at once above its rate (and the most one request may carry); 0 is the rate")
	fs.IntVar(&l.Defaults.MaxSeries, "limits.max-series", l.Defaults.MaxSeries,
		"series each tenant may have; 0 is unlimited")
	fs.Float64Var(&l.Defaults.EventsRate, "limits.events-rate", l.Defaults.EventsRate,
		"change events per second each tenant may write; 0 is unlimited")
	fs.IntVar(&l.Defaults.EventsBurstSize, "limits.events-burst-size", l.Defaults.EventsBurstSize,
		"change events a tenant may write at once above its rate; 0 is the rate")
	fs.IntVar(&l.Defaults.MaxSamplesPerQuery, "limits.max-samples-per-query", l.Defaults.MaxSamplesPerQuery,
		"samples one PromQL query of a tenant may read from the store; 0 is unlimited")
	fs.Func("limits.query-timeout", "how long one query of a tenant may take, queueing included (at most --query.timeout); 0 is --query.timeout", func(s string) error {
		d, err := model.ParseDuration(s)
		if err != nil {
			dd, err2 := time.ParseDuration(s)
			if err2 != nil {
				return err
			}
			d = model.Duration(dd)
		}
		l.Defaults.QueryTimeout = d
		return nil
	})
	fs.IntVar(&l.Defaults.MaxConcurrentQueries, "limits.max-concurrent-queries", l.Defaults.MaxConcurrentQueries,
		"queries each tenant may run at once, more wait for a slot; 0 is unlimited (--query.max-concurrency for all)")
	fs.IntVar(&l.MaxInflightWrites, "limits.max-inflight-writes", l.MaxInflightWrites,
		"write requests served at once across tenants, more get 503 with Retry-After; 0 is unlimited")
	fs.Int64Var(&l.MaxInflightWriteBytes, "limits.max-inflight-write-bytes", l.MaxInflightWriteBytes,
		"bytes of remote-write bodies (compressed and decoded) held at once across tenants; a request that would go over gets 503 with Retry-After before it is decoded (one larger than the whole budget is served alone); 0 is unlimited (docs/operations.md)")
}
