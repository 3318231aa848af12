package storage

import (
	"context"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
)

// ShardSpec selects one of Count disjoint shards of the series by the
// values of some labels: the shard of a series is a hash of its values of
// Labels (or, with Without, of every label but Labels and the metric name)
// modulo Count. Sharding by an aggregation's grouping labels keeps every
// group of the aggregation in one shard.
type ShardSpec struct {
	Labels       []string
	Without      bool
	Index, Count uint64
}

type shardKey struct{}

// WithShard returns a context whose selects return only the series of the
// shard.
func WithShard(ctx context.Context, s ShardSpec) context.Context {
	return context.WithValue(ctx, shardKey{}, s)
}

func shardFrom(ctx context.Context) (ShardSpec, bool) {
	s, ok := ctx.Value(shardKey{}).(ShardSpec)
	return s, ok && s.Count > 0
}

// Contains reports whether a series belongs to the shard.
func (s ShardSpec) Contains(lset labels.Labels) bool {
	var d xxhash.Digest
	d.Reset()
	sep := []byte{0xff}
	if s.Without {
		lset.Range(func(l labels.Label) {
			if l.Name == labels.MetricName || slices.Contains(s.Labels, l.Name) {
				return
			}
			_, _ = d.WriteString(l.Name)
			_, _ = d.Write(sep)
			_, _ = d.WriteString(l.Value)
			_, _ = d.Write(sep)
		})
	} else {
		for _, name := range s.Labels {
			_, _ = d.WriteString(lset.Get(name))
			_, _ = d.Write(sep)
		}
	}
	return d.Sum64()%s.Count == s.Index
}
