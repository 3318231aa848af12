package storage_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
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

// TestShardedSelect: the shards of a select (by SelectHints alone, and by
// WithShard's spec) are disjoint and together are the unsharded select,
// each series in the shard its hash names.
func TestShardedSelect(t *testing.T) {
	db := storagetest.New(t)
	ctx := context.Background()
	app := db.Appender(ctx)
	for i := range 200 {
		lset := labels.FromStrings("__name__", fmt.Sprintf("m%d", i%2), "service", fmt.Sprintf("s%d", i%7), "i", fmt.Sprint(i))
		_, err := app.Append(0, lset, 1000, float64(i))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	m := labels.MustNewMatcher(labels.MatchRegexp, "__name__", "m.*")
	byName := map[string]labels.Labels{}
	names := func(ctx context.Context, hints *promstorage.SelectHints) []string {
		q, err := db.Querier(0, 2000)
		require.NoError(t, err)
		defer q.Close()
		ss := q.Select(ctx, false, hints, m)
		var out []string
		for ss.Next() {
			out = append(out, ss.At().Labels().String())
			byName[ss.At().Labels().String()] = ss.At().Labels()
		}
		require.NoError(t, ss.Err())
		return out
	}
	all := names(ctx, nil)
	require.Len(t, all, 200)
	for _, withSpec := range []bool{false, true} {
		var union []string
		for i := range uint64(3) {
			spec := storage.ShardSpec{Labels: []string{"service"}, Index: i, Count: 3}
			c := ctx
			if withSpec {
				c = storage.WithShard(ctx, spec)
			}
			got := names(c, &promstorage.SelectHints{Start: 0, End: 2000, ShardIndex: i, ShardCount: 3})
			require.NotEmpty(t, got)
			for _, s := range got {
				lset := byName[s]
				if withSpec {
					require.True(t, spec.Contains(lset), "%s not in shard %d", s, i)
				} else {
					require.Equal(t, i, labels.StableHash(lset)%3, s)
				}
			}
			union = append(union, got...)
		}
		slices.Sort(union)
		want := slices.Clone(all)
		slices.Sort(want)
		require.Equal(t, want, union)
	}
}
