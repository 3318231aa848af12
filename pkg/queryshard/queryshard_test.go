package queryshard_test

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/queryshard"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// TestPromQLBuiltinSharded runs Prometheus' built-in PromQL test files
// through the sharding engine over levitated's store: every shardable
// aggregation in them is evaluated in shards, and the results must be the
// files' expected ones.
func TestPromQLBuiltinSharded(t *testing.T) {
	for _, shards := range []int{2, 3} {
		t.Run(map[int]string{2: "shards=2", 3: "shards=3"}[shards], func(t *testing.T) {
			opts := levpromql.DefaultOptions()
			opts.Timeout = 100 * time.Second
			opts.UseStartTimestamps = true // start_timestamps.test needs it, as promqltest's engine has it
			inner, err := levpromql.New(opts)
			require.NoError(t, err)
			defer inner.Close()
			engine := queryshard.New(inner, shards, levpromql.NewParser())
			promqltest.RunBuiltinTestsWithStorage(t, engine, func(tb testing.TB) storage.Storage { return storagetest.New(tb) })
			// The files are full of shardable aggregations; make sure they
			// went through the shards.
			require.Greater(t, engine.Sharded(), int64(300))
			t.Logf("%d queries ran sharded", engine.Sharded())
		})
	}
}
