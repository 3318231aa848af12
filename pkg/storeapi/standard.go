package storeapi

import (
	"context"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/levitated/levitated/pkg/xorchunk"
)

// StandardChunkQuerier returns q with its chunks in the encodings every
// remote-read and StoreAPI client knows (XOR, histogram, float histogram):
// levitated stores Prometheus' newer encodings (XOR2, histograms with
// start timestamps), which a Thanos sidecar v0.42 reading remote read
// refuses ("invalid chunk encoding"), as a Prometheus 3 with default
// settings never sends them. Chunks already in a standard encoding pass
// as they are.
func StandardChunkQuerier(q promstorage.ChunkQuerier) promstorage.ChunkQuerier {
	return standardChunkQuerier{q}
}

type standardChunkQuerier struct{ promstorage.ChunkQuerier }

func (q standardChunkQuerier) Select(ctx context.Context, sortSeries bool, hints *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.ChunkSeriesSet {
	return standardChunkSet{q.ChunkQuerier.Select(ctx, sortSeries, hints, ms...)}
}

type standardChunkSet struct{ promstorage.ChunkSeriesSet }

func (s standardChunkSet) At() promstorage.ChunkSeries {
	return standardChunkSeries{s.ChunkSeriesSet.At()}
}

type standardChunkSeries struct{ promstorage.ChunkSeries }

func (s standardChunkSeries) Iterator(chunks.Iterator) chunks.Iterator {
	return &standardIterator{it: s.ChunkSeries.Iterator(nil)}
}

// standardIterator re-encodes the chunks of it that are not standard;
// one chunk may become several.
type standardIterator struct {
	it      chunks.Iterator
	pending []chunks.Meta
	cur     chunks.Meta
	err     error
	xor     xorchunk.Encoder
}

func (i *standardIterator) Next() bool {
	if i.err != nil {
		return false
	}
	for len(i.pending) == 0 {
		if !i.it.Next() {
			return false
		}
		metas, err := standardChunks(i.it.At(), &i.xor)
		if err != nil {
			i.err = err
			return false
		}
		i.pending = metas
	}
	i.cur, i.pending = i.pending[0], i.pending[1:]
	return true
}

func (i *standardIterator) At() chunks.Meta { return i.cur }

func (i *standardIterator) Err() error {
	if i.err != nil {
		return i.err
	}
	return i.it.Err()
}
