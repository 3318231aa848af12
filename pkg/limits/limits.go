// Package limits holds levitated's per-tenant limits, as Mimir does: a
// default set from flags and per-tenant overrides from a YAML file
// (re-read when it changes), and the state that enforces them: token
// buckets (golang.org/x/time/rate) for samples and events per second,
// and a semaphore of concurrent queries per tenant.
//
// A request over a limit gets an *Error naming the limit, its value and
// the flag or overrides-file setting that changes it, with the HTTP status
// and gRPC code to answer with: 429 (ResourceExhausted) for a quota cut,
// 503 (Unavailable) for an overload the client must retry so that no data
// is lost, each with a Retry-After; 400 (InvalidArgument) or 422 for a
// request no retry can make acceptable.
//
// The limits are applied as wrappers of what they limit, so that the
// code below them sees a plain store: NewAppendable wraps the store that
// remote write, OTLP and the ruler append to (series, samples per second,
// the in-flight byte budget and label limits remote write asks before
// decoding), Events the event store's Append (events per second), Engine
// the PromQL engine (samples and time per query); StartWrite and
// StartQuery admit a request by its route (in-flight writes; a query's
// deadline and slot). It must not know a route, a protocol or a status
// writer: its errors carry their status and the server answers them.
//
// Zero means unlimited for every limit here, so a levitated without
// limits configured behaves as Prometheus does.
package limits

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"
)

// Limits are one tenant's limits. The yaml names are the overrides file's.
type Limits struct {
	// IngestionRate is samples (floats and histograms) per second, the
	// rate at which the token bucket refills; IngestionBurstSize is the
	// bucket's size, the most one request may carry. Zero rate means
	// unlimited; zero burst means the rate (at least 1).
	IngestionRate      float64 `yaml:"ingestion_rate"`
	IngestionBurstSize int     `yaml:"ingestion_burst_size"`
	// MaxSeries is the most series the tenant may have.
	MaxSeries int `yaml:"max_series"`
	// MaxLabelNamesPerSeries, MaxLabelNameLength and MaxLabelValueLength
	// bound each written series; zero means the server-wide --write.*
	// flag.
	MaxLabelNamesPerSeries int `yaml:"max_label_names_per_series"`
	MaxLabelNameLength     int `yaml:"max_label_name_length"`
	MaxLabelValueLength    int `yaml:"max_label_value_length"`
	// EventsRate is change events per second, EventsBurstSize the bucket.
	EventsRate      float64 `yaml:"events_rate"`
	EventsBurstSize int     `yaml:"events_burst_size"`
	// MaxSamplesPerQuery is the most samples one PromQL query may read
	// from the store (Prometheus' query-cost max_samples_read, per query).
	MaxSamplesPerQuery int `yaml:"max_samples_per_query"`
	// QueryTimeout bounds one query, queueing included; it can only
	// shorten --query.timeout.
	QueryTimeout model.Duration `yaml:"query_timeout"`
	// MaxConcurrentQueries is how many queries (PromQL, series, labels,
	// exemplars, metadata, analyses) the tenant may run at once; more
	// wait for a slot until their timeout.
	MaxConcurrentQueries int `yaml:"max_concurrent_queries"`
}

// Flag names of the default of each limit, by yaml name. cmd/levitated
// defines the flags; messages name them.
var flagNames = map[string]string{
	"ingestion_rate":             "--limits.ingestion-rate",
	"ingestion_burst_size":       "--limits.ingestion-burst-size",
	"max_series":                 "--limits.max-series",
	"max_label_names_per_series": "--write.max-labels-per-series",
	"max_label_name_length":      "--write.max-label-name-bytes",
	"max_label_value_length":     "--write.max-label-value-bytes",
	"events_rate":                "--limits.events-rate",
	"events_burst_size":          "--limits.events-burst-size",
	"max_samples_per_query":      "--limits.max-samples-per-query",
	"query_timeout":              "--limits.query-timeout",
	"max_concurrent_queries":     "--limits.max-concurrent-queries",
}

// FlagNames returns the flag that sets the default of each limit, by its
// overrides-file name.
func FlagNames() map[string]string {
	m := make(map[string]string, len(flagNames))
	for k, v := range flagNames {
		m[k] = v
	}
	return m
}

// Validate reports every negative limit, in one error.
func (l Limits) Validate() error {
	var errs []error
	v := reflect.ValueOf(l)
	t := v.Type()
	for i := range t.NumField() {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			if f.Int() < 0 {
				errs = append(errs, fmt.Errorf("limits: %s is negative (%s)", name, flagNames[name]))
			}
		case reflect.Float64:
			if f.Float() < 0 {
				errs = append(errs, fmt.Errorf("limits: %s is negative (%s)", name, flagNames[name]))
			}
		}
	}
	return errors.Join(errs...)
}

// overrides is a loaded overrides file.
type overrides struct {
	path    string
	modTime time.Time
	tenants map[string]tenantOverride
}

type tenantOverride struct {
	limits Limits
	set    map[string]bool // yaml names the file sets for the tenant
}

// overridesFile is the file's shape (Mimir's runtime configuration):
//
//	overrides:
//	  team-a:
//	    ingestion_rate: 50000
//	    max_concurrent_queries: 4
type overridesFile struct {
	Overrides map[string]yaml.MapSlice `yaml:"overrides"`
}

// loadOverrides reads path; each tenant's limits start from defaults and
// take the fields the file sets. Unknown fields are errors.
func loadOverrides(path string, defaults Limits) (*overrides, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read limits overrides: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read limits overrides: %w", err)
	}
	var f overridesFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("limits overrides %s: %w", path, err)
	}
	o := &overrides{path: path, modTime: fi.ModTime(), tenants: make(map[string]tenantOverride, len(f.Overrides))}
	var errs []error
	for name, fields := range f.Overrides {
		raw, err := yaml.Marshal(fields)
		if err != nil {
			errs = append(errs, fmt.Errorf("limits overrides %s: tenant %q: %w", path, name, err))
			continue
		}
		l := defaults
		if err := yaml.UnmarshalStrict(raw, &l); err != nil {
			errs = append(errs, fmt.Errorf("limits overrides %s: tenant %q: %w", path, name, err))
			continue
		}
		if err := l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("limits overrides %s: tenant %q: %w", path, name, err))
			continue
		}
		set := map[string]bool{}
		for _, item := range fields {
			if k, ok := item.Key.(string); ok {
				set[k] = true
			}
		}
		o.tenants[name] = tenantOverride{limits: l, set: set}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

// setting names what sets limit (a yaml name) for tenant: the overrides
// file, or the flag.
func (o *overrides) setting(tenantID, limit string) string {
	if o != nil {
		if t, ok := o.tenants[tenantID]; ok && t.set[limit] {
			return fmt.Sprintf("%s for tenant %q in the limits overrides file %s", limit, tenantID, o.path)
		}
	}
	return fmt.Sprintf("%s (default for every tenant; per tenant: %s in the limits overrides file)", flagNames[limit], limit)
}
