package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/storeapi"
)

// This file joins levitated to a Thanos fleet (pkg/storeapi): the
// external labels, the Thanos StoreAPI and Info services on the gRPC port,
// and the external labels in /api/v1/status/config.

// StoreAPIOptions configure the Thanos StoreAPI (pkg/storeapi).
type StoreAPIOptions struct {
	// ExternalLabels identify this levitated in a fleet, as Prometheus'
	// global.external_labels do: added to every series the StoreAPI
	// serves and shown in /api/v1/status/config.
	ExternalLabels labels.Labels
	// MaxBufferBytes bounds what the StoreAPI Series calls hold at once,
	// all calls together, while they sort their series by the external
	// labels. Default 512 MiB.
	MaxBufferBytes int64
}

// StoreAPIBufferFlag is the flag that sets StoreAPIOptions.MaxBufferBytes.
const StoreAPIBufferFlag = "--storeapi.max-buffer-bytes"

func (o *StoreAPIOptions) ensureDefaults() {
	if o.MaxBufferBytes == 0 {
		o.MaxBufferBytes = storeapi.DefaultOptions().MaxBufferBytes
	}
}

func (o StoreAPIOptions) validate() error {
	var errs []error
	if err := storeapi.ValidateExternalLabels(o.ExternalLabels); err != nil {
		errs = append(errs, fmt.Errorf("server: %w", err))
	}
	if o.MaxBufferBytes < 0 {
		errs = append(errs, fmt.Errorf("server: StoreAPI max buffer bytes %d is negative", o.MaxBufferBytes))
	}
	return errors.Join(errs...)
}

// mountStoreAPI registers thanos.Store and thanos.info.Info on the gRPC
// server. Calls are authenticated and given their tenant like every gRPC
// call (grpcAccess: read scope; Series, LabelNames and LabelValues are
// queries, under the tenant's concurrency and timeout; Series calls also
// under --query.max-concurrency).
func (s *Server) mountStoreAPI() error {
	o := storeapi.DefaultOptions()
	o.ExternalLabels = s.opts.StoreAPI.ExternalLabels
	o.MaxBufferBytes = s.opts.StoreAPI.MaxBufferBytes
	o.BufferFlag = StoreAPIBufferFlag
	o.Retention = s.opts.Storage.Retention
	o.SampleLimit = s.sec.limiter.MaxSamplesPerQuery
	// Series calls run at most as many at once as PromQL queries do (a
	// pool of their own).
	q := s.opts.Query
	q.EnsureDefaults()
	o.MaxConcurrentSeries = q.MaxConcurrency
	o.ConcurrencyFlag = "--query.max-concurrency"
	st, err := storeapi.New(s.query, o)
	if err != nil {
		return fmt.Errorf("StoreAPI: %w", err)
	}
	st.Register(s.grpc)
	return nil
}

// prometheusConfig is what /api/v1/status/config shows: Prometheus'
// defaults with the external labels, so that a Thanos sidecar in front of
// levitated finds them there.
func (s *Server) prometheusConfig() config.Config {
	c := config.DefaultConfig
	c.GlobalConfig.ExternalLabels = s.opts.StoreAPI.ExternalLabels
	return c
}

// chunkQuerier is the store's chunks merged with the change-event series,
// encoded into chunks (Prometheus' NewSeriesToChunkEncoder), in the
// standard encodings: what remote read's streamed chunks and the StoreAPI
// send.
func (q queryable) chunkQuerier(mint, maxt int64) (promstorage.ChunkQuerier, error) {
	cq, err := q.db.ChunkQuerier(mint, maxt)
	if err != nil {
		return nil, err
	}
	eq := eventChunkQuerier{q.events.ContextQuerier(q.db, mint, maxt)}
	// In the chunk encodings remote-read and StoreAPI clients know: a
	// Thanos sidecar in front of levitated reads them.
	return storeapi.StandardChunkQuerier(promstorage.NewMergeChunkQuerier([]promstorage.ChunkQuerier{cq, eq}, nil,
		promstorage.NewCompactingChunkSeriesMerger(promstorage.ChainedSeriesMerge))), nil
}

// eventChunkQuerier serves the event series' samples as chunks.
type eventChunkQuerier struct{ promstorage.Querier }

func (q eventChunkQuerier) Select(ctx context.Context, sortSeries bool, hints *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.ChunkSeriesSet {
	return promstorage.NewSeriesSetToChunkSet(q.Querier.Select(ctx, sortSeries, hints, ms...))
}
