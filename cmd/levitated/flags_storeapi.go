package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/storeapi"
)

// addStoreAPIFlags binds the flags of the Thanos StoreAPI and the external
// labels (docs/scale-out.md) to o.
func addStoreAPIFlags(fs *flag.FlagSet, o *server.Options) {
	fs.Var(&externalLabels{o: &o.StoreAPI}, "external-label",
		"`name=value` label identifying this levitated in a fleet (repeatable), as Prometheus' global.external_labels: added to every series of the Thanos StoreAPI and shown in /api/v1/status/config")
	fs.Int64Var(&o.StoreAPI.MaxBufferBytes, server.StoreAPIBufferFlag[2:], o.StoreAPI.MaxBufferBytes,
		"most bytes the Thanos StoreAPI Series calls may hold at once, all together, while they sort their series by the external labels; a call over it fails with ResourceExhausted")
}

// externalLabels is the repeatable --external-label flag.
type externalLabels struct{ o *server.StoreAPIOptions }

func (e *externalLabels) String() string {
	if e == nil || e.o == nil {
		return ""
	}
	var parts []string
	e.o.ExternalLabels.Range(func(l labels.Label) { parts = append(parts, l.Name+"="+l.Value) })
	return strings.Join(parts, ",")
}

func (e *externalLabels) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q is not name=value", v)
	}
	if e.o.ExternalLabels.Has(name) {
		return fmt.Errorf("label %q given twice", name)
	}
	l := labels.Label{Name: name, Value: value}
	if err := storeapi.ValidateExternalLabels(labels.New(l)); err != nil {
		return err
	}
	var all []labels.Label
	e.o.ExternalLabels.Range(func(l labels.Label) { all = append(all, l) })
	e.o.ExternalLabels = labels.New(append(all, l)...)
	return nil
}
