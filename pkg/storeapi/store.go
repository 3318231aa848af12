// Package storeapi serves levitated's data to a Thanos fleet: the Thanos
// StoreAPI (gRPC thanos.Store: Series, LabelNames, LabelValues) and the
// Info API (thanos.info.Info) that a Thanos Querier calls to discover an
// endpoint, both generated from Thanos' own protos (api/proto/thanos).
//
// It behaves as a Prometheus behind a Thanos sidecar does (Thanos'
// pkg/store/tsdb.go is the model): every series carries the external
// labels, matchers on them select or exclude the whole store, Series
// streams the chunks in the encodings Thanos reads (XOR, histogram and
// float histogram, in Prometheus' chunkenc encodings; others re-encoded
// to those), split into frames of at most
// MaxFrameBytes, sorted by their labels as sent, and honours skip_chunks,
// without_replica_labels, limit, shard_info and response_batch_size.
//
// What a call reads is decided by its context: the tenant set by the
// server's authentication, and the deadline of the query timeout. At most
// MaxConcurrentSeries Series calls run at once. A Series call whose labels
// must be re-sorted (external labels added, replica labels removed) holds
// the response in memory, bounded by the tenant's samples limit and by
// MaxBufferBytes for all calls together; a client that stops reading holds
// only gRPC's flow-control window until the deadline.
package storeapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"

	"github.com/levitated/levitated/api/proto/thanos/infopb"
	"github.com/levitated/levitated/api/proto/thanos/labelpb"
	"github.com/levitated/levitated/api/proto/thanos/storepb"
)

// ComponentType is what Info reports: levitated answers as a Prometheus
// with a Thanos sidecar does, so that a Querier treats it as one.
const ComponentType = "sidecar"

// Options configure a Store.
type Options struct {
	// ExternalLabels are added to every series, as Prometheus'
	// global.external_labels are by a Thanos sidecar. They identify this
	// levitated in a fleet (with a replica label, its HA pair).
	ExternalLabels labels.Labels
	// Retention is how far back the store holds data; Info reports
	// now-Retention as the oldest time, so that a Querier sends no query
	// older than that here.
	Retention time.Duration
	// MaxFrameBytes bounds one Series response message (1 MiB, Thanos'
	// frame size for a local TSDB); a series larger than that is split
	// over several.
	MaxFrameBytes int
	// MaxBufferBytes bounds the labels and chunks the Series calls hold
	// at once, all calls together, while they re-sort them. A call that
	// would take the total over it fails with ResourceExhausted.
	MaxBufferBytes int64
	// MaxConcurrentSeries is the most Series calls served at once; more
	// wait for a slot until their deadline, then fail with
	// ResourceExhausted. 0 for no bound.
	MaxConcurrentSeries int
	// ConcurrencyFlag names the setting of MaxConcurrentSeries, for errors.
	ConcurrencyFlag string
	// SampleLimit returns the most samples one Series call of the tenant
	// of ctx may send and the setting that changes it; 0 for none.
	SampleLimit func(ctx context.Context) (int, string)
	// BufferFlag names the flag that sets MaxBufferBytes, for errors.
	BufferFlag string
}

// DefaultOptions returns 1 MiB frames and a 512 MiB buffer.
func DefaultOptions() Options {
	return Options{MaxFrameBytes: 1 << 20, MaxBufferBytes: 512 << 20}
}

// Validate reports every unusable field in one error.
func (o Options) Validate() error {
	var errs []error
	if err := ValidateExternalLabels(o.ExternalLabels); err != nil {
		errs = append(errs, err)
	}
	if o.MaxFrameBytes <= 0 {
		errs = append(errs, fmt.Errorf("storeapi: max frame bytes %d must be positive", o.MaxFrameBytes))
	}
	if o.MaxBufferBytes <= 0 {
		errs = append(errs, fmt.Errorf("storeapi: max buffer bytes %d must be positive", o.MaxBufferBytes))
	}
	if o.MaxConcurrentSeries < 0 {
		errs = append(errs, fmt.Errorf("storeapi: max concurrent Series calls %d is negative", o.MaxConcurrentSeries))
	}
	if o.Retention < 0 {
		errs = append(errs, fmt.Errorf("storeapi: retention %s is negative", o.Retention))
	}
	return errors.Join(errs...)
}

// Store serves thanos.Store and thanos.info.Info over a chunk queryable.
type Store struct {
	storepb.UnimplementedStoreServer
	infopb.UnimplementedInfoServer

	src  promstorage.ChunkQueryable
	opts Options
	ext  []labels.Label // ExternalLabels, sorted
	now  func() time.Time

	held  atomic.Int64  // bytes the Series calls hold to re-sort
	slots chan struct{} // Series calls running; nil for no bound
}

// New returns a Store reading src: chunks of the tenant of each call's
// context (levitated's store merged with its change-event series).
func New(src promstorage.ChunkQueryable, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.BufferFlag == "" {
		opts.BufferFlag = "storeapi.Options.MaxBufferBytes"
	}
	if opts.ConcurrencyFlag == "" {
		opts.ConcurrencyFlag = "storeapi.Options.MaxConcurrentSeries"
	}
	s := &Store{src: src, opts: opts, now: time.Now}
	if opts.MaxConcurrentSeries > 0 {
		s.slots = make(chan struct{}, opts.MaxConcurrentSeries)
	}
	opts.ExternalLabels.Range(func(l labels.Label) { s.ext = append(s.ext, l) })
	return s, nil
}

// HeldBytes is what the Series calls running hold to re-sort their series.
func (s *Store) HeldBytes() int64 { return s.held.Load() }

// Register adds the Store and Info services to g.
func (s *Store) Register(g grpc.ServiceRegistrar) {
	storepb.RegisterStoreServer(g, s)
	infopb.RegisterInfoServer(g, s)
}

// Info describes this endpoint to a Thanos Querier: its external labels,
// and the Store API with the time range it holds. Prometheus behind a
// sidecar reports no upper bound either: samples keep arriving.
func (s *Store) Info(ctx context.Context, _ *infopb.InfoRequest) (*infopb.InfoResponse, error) {
	minT := int64(math.MinInt64)
	if s.opts.Retention > 0 {
		minT = s.now().Add(-s.opts.Retention).UnixMilli()
	}
	resp := &infopb.InfoResponse{
		ComponentType: ComponentType,
		Store: &infopb.StoreInfo{
			MinTime:                      minT,
			MaxTime:                      math.MaxInt64,
			SupportsSharding:             true,
			SupportsWithoutReplicaLabels: true,
		},
	}
	if len(s.ext) > 0 {
		set := &labelpb.ZLabelSet{Labels: s.labelsPB()}
		resp.LabelSets = []*labelpb.ZLabelSet{set}
		resp.Store.TsdbInfos = []*infopb.TSDBInfo{{
			Labels:  &labelpb.ZLabelSet{Labels: s.labelsPB()},
			MinTime: minT,
			MaxTime: math.MaxInt64,
		}}
	}
	return resp, nil
}

func (s *Store) labelsPB() []*labelpb.Label {
	out := make([]*labelpb.Label, len(s.ext))
	for i := range s.ext {
		out[i] = &labelpb.Label{Name: s.ext[i].Name, Value: s.ext[i].Value}
	}
	return out
}

// ValidateExternalLabels reports a label set that cannot be external
// labels, as Prometheus' configuration does (valid UTF-8 names and
// values), and also a metric name, an empty value (which would add
// nothing) and a name given twice.
func ValidateExternalLabels(ls labels.Labels) error {
	var errs []error
	seen := map[string]bool{}
	ls.Range(func(l labels.Label) {
		switch {
		case !model.UTF8Validation.IsValidLabelName(l.Name):
			errs = append(errs, fmt.Errorf("external label %q: invalid label name", l.Name))
		case !model.LabelValue(l.Value).IsValid():
			errs = append(errs, fmt.Errorf("external label %q: value %q is not valid UTF-8", l.Name, l.Value))
		case l.Name == labels.MetricName:
			errs = append(errs, fmt.Errorf("external label %q: the metric name cannot be an external label", l.Name))
		case l.Value == "":
			errs = append(errs, fmt.Errorf("external label %q: empty value", l.Name))
		case seen[l.Name]:
			errs = append(errs, fmt.Errorf("external label %q: given twice", l.Name))
		}
		seen[l.Name] = true
	})
	return errors.Join(errs...)
}
