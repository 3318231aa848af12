package remotestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/levitated/levitated/api/proto/thanos/infopb"
	"github.com/levitated/levitated/api/proto/thanos/labelpb"
	"github.com/levitated/levitated/api/proto/thanos/storepb"
)

// endpoint is one remote StoreAPI server.
type endpoint struct {
	addr  string
	conn  *grpc.ClientConn
	store storepb.StoreClient
	info  infopb.InfoClient
	opts  *Options

	mu       sync.Mutex
	cached   *info // nil until an Info call answered
	failed   error // of the last Info call, if it failed
	failedAt time.Time
}

// info is what an endpoint's Info said.
type info struct {
	at         time.Time
	known      bool // false: the endpoint has no Info API; nothing is pruned
	labelSets  []labels.Labels
	minT, maxT int64
}

// describe returns the endpoint's Info, asking it again once InfoTTL has
// passed. An endpoint whose Info call fails is left out (as a Thanos
// Querier leaves out an endpoint that fails its Info) for InfoRetry, so
// that an unreachable endpoint costs one InfoTimeout, not every select's
// whole query timeout; an endpoint without the Info API is read unpruned.
func (e *endpoint) describe(ctx context.Context) (*info, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cached != nil && time.Since(e.cached.at) < e.opts.InfoTTL {
		return e.cached, nil
	}
	if e.failed != nil && time.Since(e.failedAt) < infoRetry {
		return nil, e.failed
	}
	ictx, cancel := context.WithTimeout(ctx, e.opts.InfoTimeout)
	defer cancel()
	resp, err := e.info.Info(ictx, &infopb.InfoRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		e.cached, e.failed = &info{at: time.Now()}, nil
		return e.cached, nil
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		e.failed, e.failedAt = fmt.Errorf("info: %w", err), time.Now()
		return nil, e.failed
	}
	in := &info{at: time.Now(), known: true, minT: math.MinInt64, maxT: math.MaxInt64}
	for _, ls := range resp.GetLabelSets() {
		in.labelSets = append(in.labelSets, zLabels(ls))
	}
	if st := resp.GetStore(); st != nil {
		in.minT, in.maxT = st.GetMinTime(), st.GetMaxTime()
	} else {
		// No store API: nothing to ask Series of.
		in.minT, in.maxT = math.MaxInt64, math.MinInt64
	}
	e.cached, e.failed = in, nil
	return in, nil
}

// infoRetry is how long an endpoint whose Info failed is left out.
const infoRetry = 5 * time.Second

func zLabels(ls *labelpb.ZLabelSet) labels.Labels {
	b := labels.NewScratchBuilder(len(ls.GetLabels()))
	for _, l := range ls.GetLabels() {
		b.Add(l.GetName(), l.GetValue())
	}
	b.Sort()
	return b.Labels()
}

// prune narrows [mint, maxt] to the endpoint's time range and reports
// whether it may hold series matching ms: as a Thanos Querier does, an
// endpoint is skipped when none of its external label sets agrees with the
// matchers on the labels the set has.
func (in *info) prune(mint, maxt int64, ms []*labels.Matcher) (int64, int64, bool) {
	if !in.known {
		return mint, maxt, true
	}
	mint, maxt = max(mint, in.minT), min(maxt, in.maxT)
	if mint > maxt {
		return mint, maxt, false
	}
	if len(in.labelSets) == 0 {
		return mint, maxt, true
	}
	for _, ls := range in.labelSets {
		ok := true
		for _, m := range ms {
			if v := ls.Get(m.Name); ls.Has(m.Name) && !m.Matches(v) {
				ok = false
				break
			}
		}
		if ok {
			return mint, maxt, true
		}
	}
	return mint, maxt, false
}

func matchersPB(ms []*labels.Matcher) ([]*storepb.LabelMatcher, error) {
	out := make([]*storepb.LabelMatcher, 0, len(ms))
	for _, m := range ms {
		var t storepb.LabelMatcher_Type
		switch m.Type {
		case labels.MatchEqual:
			t = storepb.LabelMatcher_EQ
		case labels.MatchNotEqual:
			t = storepb.LabelMatcher_NEQ
		case labels.MatchRegexp:
			t = storepb.LabelMatcher_RE
		case labels.MatchNotRegexp:
			t = storepb.LabelMatcher_NRE
		default:
			return nil, fmt.Errorf("matcher type %v has no StoreAPI type", m.Type)
		}
		out = append(out, &storepb.LabelMatcher{Type: t, Name: m.Name, Value: m.Value})
	}
	return out, nil
}

// startSelect starts a Series call in the background; the set it returns
// waits for it when first read.
func (e *endpoint) startSelect(ctx context.Context, s *Store, mint, maxt int64, hints *promstorage.SelectHints, ms []*labels.Matcher) *fetch {
	f := &fetch{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		series, warns, err := e.series(ctx, mint, maxt, hints, ms)
		if err != nil {
			if ctx.Err() != nil {
				f.err = ctx.Err()
				return
			}
			f.warns.Add(s.failed(e, "series", err))
			return
		}
		for _, w := range warns {
			f.warns.Add(remoteWarning(e.addr, w))
		}
		f.series = series
	}()
	return f
}

// scope narrows a call's time range to what the endpoint holds and turns
// its matchers into the StoreAPI's; ok is false when the endpoint's Info
// says it cannot have an answer (no call is made then).
func (e *endpoint) scope(ctx context.Context, mint, maxt int64, ms []*labels.Matcher) (int64, int64, []*storepb.LabelMatcher, bool, error) {
	in, err := e.describe(ctx)
	if err != nil {
		return 0, 0, nil, false, err
	}
	mint, maxt, ok := in.prune(mint, maxt, ms)
	if !ok {
		return 0, 0, nil, false, nil
	}
	pms, err := matchersPB(ms)
	if err != nil {
		return 0, 0, nil, false, err
	}
	return mint, maxt, pms, true, nil
}

// series calls Series and returns the series sorted by labels, each with
// its chunks decoded, and the endpoint's warnings.
func (e *endpoint) series(ctx context.Context, mint, maxt int64, hints *promstorage.SelectHints, ms []*labels.Matcher) ([]*series, []string, error) {
	mint, maxt, pms, ok, err := e.scope(ctx, mint, maxt, ms)
	if err != nil || !ok {
		return nil, nil, err
	}
	req := &storepb.SeriesRequest{
		MinTime:                 mint,
		MaxTime:                 maxt,
		Matchers:                pms,
		PartialResponseStrategy: storepb.PartialResponseStrategy_WARN,
		// Raw data; a store gateway serving downsampled blocks only would
		// need these (a Thanos Querier's default).
		Aggregates:           []storepb.Aggr{storepb.Aggr_COUNT, storepb.Aggr_SUM},
		WithoutReplicaLabels: e.opts.ReplicaLabels,
	}
	var shardCount, shardIndex uint64
	if hints != nil {
		req.SkipChunks = hints.Func == "series"
		shardCount, shardIndex = hints.ShardCount, hints.ShardIndex
		if shardCount == 0 && hints.Limit > 0 {
			req.Limit = int64(hints.Limit)
		}
		if hints.Step > 0 || hints.Func != "" || hints.Range > 0 {
			req.QueryHints = &storepb.QueryHints{StepMillis: hints.Step}
			if hints.Func != "" {
				req.QueryHints.Func = &storepb.Func{Name: hints.Func}
			}
			if hints.Range > 0 {
				req.QueryHints.Range = &storepb.Range{Millis: hints.Range}
			}
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if the answer is dropped
	stream, err := e.store.Series(cctx, req)
	if err != nil {
		return nil, nil, err
	}
	c := collector{mint: mint, maxt: maxt, maxBytes: e.opts.MaxBytes, flag: e.opts.MaxBytesFlag, skipChunks: req.SkipChunks}
	var warns []string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		switch r := resp.GetResult().(type) {
		case *storepb.SeriesResponse_Series:
			err = c.add(r.Series)
		case *storepb.SeriesResponse_Batch:
			for _, s := range r.Batch.GetSeries() {
				if err = c.add(s); err != nil {
					break
				}
			}
		case *storepb.SeriesResponse_Warning:
			warns = append(warns, r.Warning)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return c.result(shardCount, shardIndex), warns, nil
}

func (e *endpoint) labelNames(ctx context.Context, mint, maxt int64, hints *promstorage.LabelHints, ms []*labels.Matcher) ([]string, []string, error) {
	mint, maxt, pms, ok, err := e.scope(ctx, mint, maxt, ms)
	if err != nil || !ok {
		return nil, nil, err
	}
	req := &storepb.LabelNamesRequest{
		Start: mint, End: maxt, Matchers: pms,
		PartialResponseStrategy: storepb.PartialResponseStrategy_WARN,
		WithoutReplicaLabels:    e.opts.ReplicaLabels,
	}
	if hints != nil && hints.Limit > 0 {
		req.Limit = int64(hints.Limit)
	}
	resp, err := e.store.LabelNames(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return resp.GetNames(), resp.GetWarnings(), nil
}

func (e *endpoint) labelValues(ctx context.Context, name string, mint, maxt int64, hints *promstorage.LabelHints, ms []*labels.Matcher) ([]string, []string, error) {
	mint, maxt, pms, ok, err := e.scope(ctx, mint, maxt, ms)
	if err != nil || !ok {
		return nil, nil, err
	}
	req := &storepb.LabelValuesRequest{
		Label: name, Start: mint, End: maxt, Matchers: pms,
		PartialResponseStrategy: storepb.PartialResponseStrategy_WARN,
		WithoutReplicaLabels:    e.opts.ReplicaLabels,
	}
	if hints != nil && hints.Limit > 0 {
		req.Limit = int64(hints.Limit)
	}
	resp, err := e.store.LabelValues(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return resp.GetValues(), resp.GetWarnings(), nil
}
