package main

import (
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/prometheus/common/config"

	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/tenant"
)

// queryStoreFlags are the flags of the remote StoreAPI endpoints merged
// into every query (docs/scale-out.md §2). The TLS flags are gathered by
// finish: TLS is used when --query.store.tls or any --query.store.tls-*
// flag is given.
type queryStoreFlags struct {
	o          *server.Options
	tls        bool
	tlsConfig  config.TLSConfig
	tlsFlagSet bool
}

// addQueryStoreFlags binds the --query.store flags to o; call finish after
// parsing.
func addQueryStoreFlags(fs *flag.FlagSet, o *server.Options) *queryStoreFlags {
	f := &queryStoreFlags{o: o}
	q := &o.QueryStore
	fs.Var(repeated{&q.Endpoints, hostPort}, "query.store",
		"Thanos StoreAPI endpoint `HOST:PORT` (repeatable), typically a Thanos Querier over a fleet, whose series every query, rule, analysis and the console read next to this store's; a failing endpoint is a warning, not an error (docs/scale-out.md). Turns the query results cache off")
	fs.BoolVar(&f.tls, "query.store.tls", false, "connect to the --query.store endpoints over TLS (with the system's CAs unless --query.store.tls-ca)")
	tlsFile := func(dst *string, name, usage string) {
		fs.Func(name, usage, func(v string) error { *dst, f.tlsFlagSet = v, true; return nil })
	}
	tlsFile(&f.tlsConfig.CAFile, "query.store.tls-ca", "CA certificate `file` that verifies the --query.store endpoints (implies --query.store.tls)")
	tlsFile(&f.tlsConfig.CertFile, "query.store.tls-cert", "client certificate `file` presented to the --query.store endpoints (implies --query.store.tls)")
	tlsFile(&f.tlsConfig.KeyFile, "query.store.tls-key", "key `file` of --query.store.tls-cert")
	tlsFile(&f.tlsConfig.ServerName, "query.store.tls-server-name", "server `name` expected in the --query.store endpoints' certificates (implies --query.store.tls)")
	fs.BoolFunc("query.store.tls-insecure-skip-verify", "do not verify the --query.store endpoints' certificates (implies --query.store.tls)", func(v string) error {
		if v != "true" && v != "false" {
			return fmt.Errorf("%q is not true or false", v)
		}
		f.tlsConfig.InsecureSkipVerify, f.tlsFlagSet = v == "true", true
		return nil
	})
	fs.StringVar(&q.BearerTokenFile, "query.store.bearer-token-file", "",
		"`file` holding the bearer token sent to every --query.store endpoint, read for each call: the one identity this levitated has there, whichever tenant queries (over TLS, or to a loopback address only)")
	fs.Var(repeated{&q.Tenants, tenant.Validate}, "query.store.tenant",
		"`tenant` whose queries see the --query.store endpoints' series (repeatable); default every tenant")
	fs.Var(repeated{&q.ReplicaLabels, nil}, "query.store.replica-label",
		"`label` sent as without_replica_labels (repeatable): a Thanos Querier (v0.32 or later) removes it and merges the replicas of an HA pair")
	fs.Int64Var(&q.MaxBytes, server.QueryStoreMaxBytesFlag[2:], q.MaxBytes,
		"most bytes of labels and chunks one select may hold from one --query.store endpoint; over it the endpoint's answer is left out with a warning")
	return f
}

// finish sets the TLS configuration from the flags.
func (f *queryStoreFlags) finish() error {
	q := &f.o.QueryStore
	if !f.tls && !f.tlsFlagSet {
		return nil
	}
	if len(q.Endpoints) == 0 {
		return fmt.Errorf("--query.store.tls* given without --query.store")
	}
	if (f.tlsConfig.CertFile == "") != (f.tlsConfig.KeyFile == "") {
		return fmt.Errorf("--query.store.tls-cert and --query.store.tls-key go together")
	}
	c := f.tlsConfig
	q.TLS = &c
	return nil
}

// repeated is a repeatable string flag; a value given twice, or that
// check refuses, is refused.
type repeated struct {
	dst   *[]string
	check func(string) error
}

func hostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%q is not HOST:PORT", v)
	}
	return nil
}

func (r repeated) String() string {
	if r.dst == nil {
		return ""
	}
	return strings.Join(*r.dst, ",")
}

func (r repeated) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty value")
	}
	if r.check != nil {
		if err := r.check(v); err != nil {
			return err
		}
	}
	for _, have := range *r.dst {
		if have == v {
			return fmt.Errorf("%q given twice", v)
		}
	}
	*r.dst = append(*r.dst, v)
	return nil
}
