package storage_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/tenant"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestOnDiskFormatGolden pins the key layout and value encodings of
// FORMAT.md: a fixed set of writes must leave exactly the keys and values
// in testdata/format.golden. If this fails, the on-disk format changed:
// bump formatVersion and document the change, then run with -update.
func TestOnDiskFormatGolden(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	opts := storage.Options{Logger: quietLogger(), FS: fs}
	db, err := storage.Open("/db", opts)
	require.NoError(t, err)

	up := labels.FromStrings("__name__", "up", "job", "api")
	h := labels.FromStrings("__name__", "latency")
	app := db.AppenderV2(ctx)
	for i := int64(0); i < 3; i++ {
		_, err := app.Append(0, up, 0, 1_700_000_000_000+i*15_000, float64(i), nil, nil, promstorage.AOptions{
			Metadata:  metadata.Metadata{Type: "gauge", Help: "Target up.", Unit: ""},
			Exemplars: []exemplar.Exemplar{{Labels: labels.FromStrings("trace_id", fmt.Sprint(i)), Value: float64(i), Ts: 1_700_000_000_000 + i*15_000, HasTs: true}},
		})
		require.NoError(t, err)
	}
	for i, hg := range tsdbutil.GenerateTestHistograms(2) {
		_, err := app.Append(0, h, 1_699_999_990_000, 1_700_000_000_000+int64(i)*15_000, 0, hg, nil, promstorage.AOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	// An out-of-order sample, then a checkpoint that writes all chunks.
	app = db.AppenderV2(ctx)
	_, err = app.Append(0, up, 0, 1_700_000_000_000+7_500, 0.5, nil, nil, promstorage.AOptions{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	require.NoError(t, storage.CheckpointForTest(db))
	// A second tenant, and a write-ahead record no checkpoint covers.
	app = db.AppenderV2(tenant.NewContext(ctx, "team-b"))
	_, err = app.Append(0, up, 1_699_999_999_000, 1_700_000_060_000, 1, nil, nil, promstorage.AOptions{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	var dump bytes.Buffer
	it, err := storage.PebbleForTest(db).NewIter(nil)
	require.NoError(t, err)
	for it.First(); it.Valid(); it.Next() {
		fmt.Fprintf(&dump, "%s %s\n", hex.EncodeToString(it.Key()), hex.EncodeToString(it.Value()))
	}
	require.NoError(t, it.Error())
	require.NoError(t, it.Close())
	// Close writes a final checkpoint; the dump above is taken before it.
	require.NoError(t, db.Close())

	golden := filepath.Join("testdata", "format.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, dump.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), dump.String(), "on-disk format changed; see FORMAT.md")
}
