package storeapi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/levitated/levitated/api/proto/thanos/labelpb"
	"github.com/levitated/levitated/api/proto/thanos/storepb"
	"github.com/levitated/levitated/pkg/tenant"
	"github.com/levitated/levitated/pkg/xorchunk"
)

// Series streams the series matching the request with their chunks (or
// only their labels, with skip_chunks), sorted by the labels they are sent
// with: external labels added, without_replica_labels removed.
func (s *Store) Series(req *storepb.SeriesRequest, srv storepb.Store_SeriesServer) error {
	ctx := srv.Context()
	if req.MinTime > req.MaxTime {
		return status.Errorf(codes.InvalidArgument, "min_time %d is after max_time %d", req.MinTime, req.MaxTime)
	}
	if req.Limit < 0 {
		return status.Errorf(codes.InvalidArgument, "limit %d is negative", req.Limit)
	}
	match, ms, err := s.matchers(req.Matchers)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if !match {
		return nil // the external labels exclude this store
	}
	if len(ms) == 0 {
		return status.Error(codes.InvalidArgument, "no matchers specified (excluding external labels)")
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	q, err := s.src.ChunkQuerier(req.MinTime, req.MaxTime)
	if err != nil {
		return status.Errorf(codes.Internal, "open querier: %v", err)
	}
	defer q.Close()

	hints := &promstorage.SelectHints{
		Start:           req.MinTime,
		End:             req.MaxTime,
		Limit:           int(req.Limit),
		DisableTrimming: true, // chunks may span past the range; the client trims
	}
	if req.SkipChunks {
		hints.Func = "series"
	}
	w := s.newSeriesWriter(ctx, req, srv)
	defer w.release()
	set := q.Select(ctx, true, hints, ms...)
	sent := int64(0)
	for set.Next() {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		if req.Limit > 0 && sent >= req.Limit {
			break
		}
		series := set.At()
		lset := w.labels(series.Labels())
		if !w.shard.matches(lset) {
			continue
		}
		sent++
		if err := w.series(lset, series); err != nil {
			return err
		}
	}
	if err := set.Err(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return status.FromContextError(ctxErr).Err()
		}
		return status.Errorf(codes.Internal, "select series: %v", err)
	}
	var warnings []string
	for _, warn := range set.Warnings() {
		warnings = append(warnings, warn.Error())
	}
	return w.finish(warnings)
}

// seriesWriter turns the series of one Series call into responses.
type seriesWriter struct {
	s      *Store
	ctx    context.Context
	srv    storepb.Store_SeriesServer
	req    *storepb.SeriesRequest
	remove map[string]bool // without_replica_labels
	ext    []labels.Label  // external labels, minus removed ones
	shard  shardMatcher
	hasher *xxhash.Digest

	// resort is set when the labels as sent may not keep the store's
	// order; the frames are then held in buffer and sorted at the end.
	resort      bool
	buffer      []heldFrame
	bufferBytes int64

	samples, sampleLimit int
	sampleSetting        string

	batch      []*storepb.Series
	batchBytes int

	xor xorchunk.Encoder
}

func (s *Store) newSeriesWriter(ctx context.Context, req *storepb.SeriesRequest, srv storepb.Store_SeriesServer) *seriesWriter {
	w := &seriesWriter{s: s, ctx: ctx, srv: srv, req: req, shard: newShardMatcher(req.ShardInfo), hasher: xxhash.New()}
	if len(req.WithoutReplicaLabels) > 0 {
		w.remove = map[string]bool{}
		for _, n := range req.WithoutReplicaLabels {
			w.remove[n] = true
		}
	}
	for _, l := range s.ext {
		if !w.remove[l.Name] {
			w.ext = append(w.ext, l)
		}
	}
	w.resort = len(w.ext) > 0 || len(w.remove) > 0
	if s.opts.SampleLimit != nil {
		w.sampleLimit, w.sampleSetting = s.opts.SampleLimit(ctx)
	}
	return w
}

// acquire waits for one of the Series slots until ctx ends.
func (s *Store) acquire(ctx context.Context) (release func(), err error) {
	if s.slots == nil {
		return func() {}, nil
	}
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	default:
	}
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, nil
	case <-ctx.Done():
		return nil, status.Errorf(codes.ResourceExhausted,
			"tenant %q: the Series call waited for one of the %d Series calls served at once until %v; retry later, or raise %s",
			tenant.FromContext(ctx), cap(s.slots), ctx.Err(), s.opts.ConcurrencyFlag)
	}
}

// release gives back the bytes still held.
func (w *seriesWriter) release() {
	w.s.held.Add(-w.bufferBytes)
	w.bufferBytes = 0
	w.buffer = nil
}

// labels returns a series' labels as sent: without the removed labels,
// with the external labels (which win over a stored label of the same
// name, as Thanos' sidecar and Prometheus' federation do), sorted.
func (w *seriesWriter) labels(ls labels.Labels) []*labelpb.Label {
	out := make([]*labelpb.Label, 0, ls.Len()+len(w.ext))
	i := 0
	ls.Range(func(l labels.Label) {
		if w.remove[l.Name] {
			return
		}
		for i < len(w.ext) && w.ext[i].Name < l.Name {
			out = append(out, &labelpb.Label{Name: w.ext[i].Name, Value: w.ext[i].Value})
			i++
		}
		if i < len(w.ext) && w.ext[i].Name == l.Name {
			return // the external label, appended next
		}
		out = append(out, &labelpb.Label{Name: strings.Clone(l.Name), Value: strings.Clone(l.Value)})
	})
	for ; i < len(w.ext); i++ {
		out = append(out, &labelpb.Label{Name: w.ext[i].Name, Value: w.ext[i].Value})
	}
	return out
}

// series writes one series: its labels and, unless skip_chunks, its
// chunks in frames of at most MaxFrameBytes.
func (w *seriesWriter) series(lset []*labelpb.Label, series promstorage.ChunkSeries) error {
	labelBytes := 0
	for _, l := range lset {
		labelBytes += len(l.Name) + len(l.Value) + 4
	}
	if w.req.SkipChunks {
		return w.frame(&storepb.Series{Labels: lset}, labelBytes)
	}
	frameLeft := w.s.opts.MaxFrameBytes - labelBytes
	var frame []*storepb.AggrChunk
	frameBytes := labelBytes
	it := series.Iterator(nil)
	for it.Next() {
		metas, err := standardChunks(it.At(), &w.xor)
		if err != nil {
			return status.Errorf(codes.Internal, "series %s: %v", labelString(lset), err)
		}
		for _, m := range metas {
			if err := w.countSamples(m.Chunk.NumSamples()); err != nil {
				return err
			}
			c, err := w.chunk(m)
			if err != nil {
				return status.Errorf(codes.Internal, "series %s: %v", labelString(lset), err)
			}
			size := len(c.Raw.Data) + 32
			if len(frame) > 0 && frameLeft-size < 0 {
				if err := w.frame(&storepb.Series{Labels: lset, Chunks: frame}, frameBytes); err != nil {
					return err
				}
				frame, frameBytes, frameLeft = nil, labelBytes, w.s.opts.MaxFrameBytes-labelBytes
			}
			frame = append(frame, c)
			frameBytes += size
			frameLeft -= size
		}
	}
	if err := it.Err(); err != nil {
		return status.Errorf(codes.Internal, "read chunks of %s: %v", labelString(lset), err)
	}
	if len(frame) == 0 {
		return nil // no chunk in the range: Prometheus' remote read sends no such series either
	}
	return w.frame(&storepb.Series{Labels: lset, Chunks: frame}, frameBytes)
}

// chunk is one chunk as sent, with its data copied (the store may reuse
// the bytes once the iterator moves on) and hashed as Thanos' stores do.
func (w *seriesWriter) chunk(m chunks.Meta) (*storepb.AggrChunk, error) {
	var typ storepb.Chunk_Encoding
	switch m.Chunk.Encoding() {
	case chunkenc.EncXOR:
		typ = storepb.Chunk_XOR
	case chunkenc.EncHistogram:
		typ = storepb.Chunk_HISTOGRAM
	case chunkenc.EncFloatHistogram:
		typ = storepb.Chunk_FLOAT_HISTOGRAM
	default:
		return nil, fmt.Errorf("chunk encoding %s has no StoreAPI encoding", m.Chunk.Encoding())
	}
	data := slices.Clone(m.Chunk.Bytes())
	w.hasher.Reset()
	_, _ = w.hasher.Write(data)
	return &storepb.AggrChunk{
		MinTime: m.MinTime,
		MaxTime: m.MaxTime,
		Raw:     &storepb.Chunk{Type: typ, Data: data, Hash: w.hasher.Sum64()},
	}, nil
}

// standardChunks returns a chunk as one of the encodings the StoreAPI
// knows (XOR, histogram, float histogram): as it is when it is one,
// re-encoded from its samples otherwise, without their start timestamps,
// which neither the StoreAPI nor remote read carries (XOR2 by the fast
// XOR encoder; histograms with start timestamps by Prometheus' chunk
// encoder; an unpopulated chunk is an error). x is reused.
func standardChunks(m chunks.Meta, x *xorchunk.Encoder) ([]chunks.Meta, error) {
	if m.Chunk == nil {
		return nil, fmt.Errorf("chunk %d is not populated", m.Ref)
	}
	switch m.Chunk.Encoding() {
	case chunkenc.EncXOR, chunkenc.EncHistogram, chunkenc.EncFloatHistogram:
		return []chunks.Meta{m}, nil
	case chunkenc.EncXOR2:
		data, mint, maxt, err := x.Encode(make([]byte, 0, len(m.Chunk.Bytes())+16), m.Chunk.Iterator(nil))
		if err != nil {
			return nil, fmt.Errorf("re-encode XOR2 chunk: %w", err)
		}
		c, err := chunkenc.FromData(chunkenc.EncXOR, data)
		if err != nil {
			return nil, err
		}
		return []chunks.Meta{{Chunk: c, MinTime: mint, MaxTime: maxt}}, nil
	}
	var out []chunks.Meta
	it := promstorage.NewSeriesToChunkEncoder(chunkSeries{m.Chunk}).Iterator(nil)
	for it.Next() {
		out = append(out, it.At())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("re-encode chunk of encoding %s: %w", m.Chunk.Encoding(), err)
	}
	return out, nil
}

// chunkSeries is one chunk as a series of samples without start
// timestamps, for re-encoding in the standard encodings.
type chunkSeries struct{ c chunkenc.Chunk }

func (c chunkSeries) Labels() labels.Labels { return labels.EmptyLabels() }
func (c chunkSeries) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return noStartTimes{c.c.Iterator(nil)}
}

type noStartTimes struct{ chunkenc.Iterator }

func (noStartTimes) AtST() int64 { return 0 }

func (w *seriesWriter) countSamples(n int) error {
	w.samples += n
	if w.sampleLimit > 0 && w.samples > w.sampleLimit {
		return status.Errorf(codes.ResourceExhausted,
			"tenant %q: the Series call reads more than %d samples, the samples-per-query limit; narrow the matchers or the time range, or raise %s",
			tenant.FromContext(w.ctx), w.sampleLimit, w.sampleSetting)
	}
	return nil
}

// frame sends one frame, or holds it when the series are re-sorted.
func (w *seriesWriter) frame(f *storepb.Series, size int) error {
	if !w.resort {
		return w.send(f, size)
	}
	if total := w.s.held.Add(int64(size)); total > w.s.opts.MaxBufferBytes {
		w.s.held.Add(-int64(size))
		return status.Errorf(codes.ResourceExhausted,
			"tenant %q: the Series calls would hold more than %d bytes at once while they sort their series by the external labels (this call holds %d); narrow the matchers or the time range, or raise %s",
			tenant.FromContext(w.ctx), w.s.opts.MaxBufferBytes, w.bufferBytes, w.s.opts.BufferFlag)
	}
	w.bufferBytes += int64(size)
	w.buffer = append(w.buffer, heldFrame{f, size})
	return nil
}

type heldFrame struct {
	f    *storepb.Series
	size int
}

// send writes a frame, batched when the client asked for batches.
func (w *seriesWriter) send(f *storepb.Series, size int) error {
	if w.req.ResponseBatchSize <= 1 {
		return w.write(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Series{Series: f}})
	}
	w.batch = append(w.batch, f)
	w.batchBytes += size
	if int64(len(w.batch)) >= w.req.ResponseBatchSize || w.batchBytes >= w.s.opts.MaxFrameBytes {
		return w.flushBatch()
	}
	return nil
}

func (w *seriesWriter) flushBatch() error {
	if len(w.batch) == 0 {
		return nil
	}
	b := &storepb.SeriesBatch{Series: w.batch}
	w.batch, w.batchBytes = nil, 0
	return w.write(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Batch{Batch: b}})
}

func (w *seriesWriter) write(r *storepb.SeriesResponse) error {
	if err := w.srv.Send(r); err != nil {
		if ctxErr := w.ctx.Err(); ctxErr != nil {
			return status.FromContextError(ctxErr).Err()
		}
		return status.Errorf(codes.Aborted, "send series: %v", err)
	}
	return nil
}

// finish sends what is held, sorted, then the warnings.
func (w *seriesWriter) finish(warnings []string) error {
	if w.resort {
		// Stable: the frames of one series keep their order, and series
		// whose labels become equal (replica labels removed) stay whole.
		slices.SortStableFunc(w.buffer, func(a, b heldFrame) int { return compareLabels(a.f.Labels, b.f.Labels) })
		for i, h := range w.buffer {
			if err := w.send(h.f, h.size); err != nil {
				return err
			}
			w.buffer[i] = heldFrame{} // sent: let it go
			w.s.held.Add(-int64(h.size))
			w.bufferBytes -= int64(h.size)
		}
	}
	if err := w.flushBatch(); err != nil {
		return err
	}
	for _, warn := range warnings {
		if err := w.write(&storepb.SeriesResponse{Result: &storepb.SeriesResponse_Warning{Warning: warn}}); err != nil {
			return err
		}
	}
	return nil
}

// compareLabels orders label sets as labels.Compare does.
func compareLabels(a, b []*labelpb.Label) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i].Name, b[i].Name); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func labelString(ls []*labelpb.Label) string {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	return b.Labels().String()
}

// shardMatcher keeps the series of one shard (shard_info), hashing their
// labels as sent exactly as Thanos' storepb.ShardMatcher does, so that the
// shards of every store agree.
type shardMatcher struct {
	on    bool
	by    bool
	names map[string]bool
	total uint64
	index uint64
	buf   []byte
}

func newShardMatcher(si *storepb.ShardInfo) shardMatcher {
	if si == nil || si.TotalShards < 1 {
		return shardMatcher{}
	}
	m := shardMatcher{on: true, by: si.By, names: map[string]bool{}, total: uint64(si.TotalShards), index: uint64(si.ShardIndex)}
	for _, n := range si.Labels {
		m.names[n] = true
	}
	return m
}

func (m *shardMatcher) matches(ls []*labelpb.Label) bool {
	if !m.on {
		return true
	}
	m.buf = m.buf[:0]
	for _, l := range ls {
		if m.names[l.Name] == m.by {
			m.buf = append(m.buf, l.Name...)
			m.buf = append(m.buf, '\xff')
			m.buf = append(m.buf, l.Value...)
			m.buf = append(m.buf, '\xff')
		}
	}
	return xxhash.Sum64(m.buf)%m.total == m.index
}

// matchers converts the request's matchers. Matchers on an external label
// are decided here, against its value: one that does not match excludes
// the whole store (match false); the others are left to the store.
func (s *Store) matchers(pms []*storepb.LabelMatcher) (match bool, ms []*labels.Matcher, err error) {
	for i, pm := range pms {
		if pm == nil {
			return false, nil, fmt.Errorf("matcher %d is empty", i)
		}
		var typ labels.MatchType
		switch pm.Type {
		case storepb.LabelMatcher_EQ:
			typ = labels.MatchEqual
		case storepb.LabelMatcher_NEQ:
			typ = labels.MatchNotEqual
		case storepb.LabelMatcher_RE:
			typ = labels.MatchRegexp
		case storepb.LabelMatcher_NRE:
			typ = labels.MatchNotRegexp
		default:
			return false, nil, fmt.Errorf("matcher %d on %q: unknown matcher type %d", i, pm.Name, pm.Type)
		}
		m, err := labels.NewMatcher(typ, pm.Name, pm.Value)
		if err != nil {
			return false, nil, fmt.Errorf("matcher %d on %q: %w", i, pm.Name, err)
		}
		if v, ok := s.extValue(pm.Name); ok {
			if !m.Matches(v) {
				return false, nil, nil
			}
			continue
		}
		ms = append(ms, m)
	}
	return true, ms, nil
}

func (s *Store) extValue(name string) (string, bool) {
	for _, l := range s.ext {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}
