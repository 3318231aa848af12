package storage_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/storage"
)

// TestShardSpecContains: every series is in exactly one of Count shards,
// by the hash of the spec's labels (with Without, of the others but the
// metric name): series that agree on those labels share a shard, and the
// hash is xxhash over each value (name and value) followed by 0xff.
func TestShardSpecContains(t *testing.T) {
	var series []labels.Labels
	for i := range 300 {
		series = append(series, labels.FromStrings("__name__", fmt.Sprintf("m%d", i%3), "service", fmt.Sprintf("s%d", i%7), "instance", fmt.Sprintf("i%d", i), "long", string(make([]byte, i))))
	}
	for _, spec := range []storage.ShardSpec{
		{Labels: []string{"service"}, Count: 4},
		{Labels: []string{"service", "absent"}, Count: 3},
		{Labels: []string{"instance", "long"}, Without: true, Count: 5},
		{Labels: nil, Count: 2},
	} {
		for _, lset := range series {
			var d xxhash.Digest
			d.Reset()
			if spec.Without {
				lset.Range(func(l labels.Label) {
					if l.Name != labels.MetricName && !slices.Contains(spec.Labels, l.Name) {
						_, _ = d.WriteString(l.Name + "\xff" + l.Value + "\xff")
					}
				})
			} else {
				for _, n := range spec.Labels {
					_, _ = d.WriteString(lset.Get(n) + "\xff")
				}
			}
			var in []uint64
			for i := range spec.Count {
				s := spec
				s.Index = i
				if s.Contains(lset) {
					in = append(in, i)
				}
			}
			if want := d.Sum64() % spec.Count; !slices.Equal(in, []uint64{want}) {
				t.Fatalf("%+v: %s is in shards %v, want [%d]", spec, lset, in, want)
			}
		}
	}
}
