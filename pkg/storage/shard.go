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

// Contains reports whether a series belongs to the shard. The hash is
// xxhash over the values (with Without, the names and values) each followed
// by 0xff, built in a buffer on the stack: it runs for every series of a
// sharded select, twice (ShardedPostings, queryshard's filter).
func (s ShardSpec) Contains(lset labels.Labels) bool {
	var buf [256]byte
	b := buf[:0]
	if s.Without {
		lset.Range(func(l labels.Label) {
			if l.Name == labels.MetricName || slices.Contains(s.Labels, l.Name) {
				return
			}
			b = append(b, l.Name...)
			b = append(b, 0xff)
			b = append(b, l.Value...)
			b = append(b, 0xff)
		})
	} else {
		for _, name := range s.Labels {
			b = append(b, lset.Get(name)...)
			b = append(b, 0xff)
		}
	}
	return xxhash.Sum64(b)%s.Count == s.Index
}

// containsInterned is Contains of the series whose labels are enc in syms.
func (s ShardSpec) containsInterned(syms *symbolTable, enc string) bool {
	var buf [256]byte
	b := buf[:0]
	if s.Without {
		pages := syms.loadPages()
		for i := 0; i < len(enc); {
			var name, value string
			name, value, i = pairAt(pages, enc, i)
			if name == labels.MetricName || slices.Contains(s.Labels, name) {
				continue
			}
			b = append(b, name...)
			b = append(b, 0xff)
			b = append(b, value...)
			b = append(b, 0xff)
		}
	} else {
		for _, name := range s.Labels {
			b = append(b, syms.get(enc, name)...)
			b = append(b, 0xff)
		}
	}
	return xxhash.Sum64(b)%s.Count == s.Index
}
