package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage/integrity"
)

// TestTrimTornLog: a copied last write-ahead log cut off inside its last
// batch is cut back to the batch before, after which the integrity scan
// finds nothing and Pebble opens with every whole batch; a log that ends
// cleanly is left as it is.
func TestTrimTornLog(t *testing.T) {
	dir := t.TempDir()
	pdb, err := pebble.Open(dir, &pebble.Options{})
	require.NoError(t, err)
	const batches = 10
	for i := range batches {
		require.NoError(t, pdb.Set(fmt.Appendf(nil, "k%02d", i), make([]byte, 100+i), pebble.Sync))
	}
	require.NoError(t, pdb.Close())

	got, err := trimTornLog(dir)
	require.NoError(t, err)
	require.Empty(t, got.Path, "a clean log is not trimmed")

	r, err := integrity.ScanLogs(vfs.Default, dir)
	require.NoError(t, err)
	require.NotEmpty(t, r.WALs)
	last := r.WALs[len(r.WALs)-1]
	require.Equal(t, batches, last.Records)
	require.NoError(t, os.Truncate(last.Path, last.Size-60)) // inside the last batch (100+ bytes), past the end-of-log trailer Close writes
	r, err = integrity.ScanLogs(vfs.Default, dir)
	require.NoError(t, err)
	require.Len(t, r.Findings, 1, "the torn tail is a warning before the trim")

	got, err = trimTornLog(dir)
	require.NoError(t, err)
	require.Equal(t, filepath.Clean(last.Path), filepath.Clean(got.Path))
	require.Equal(t, batches-1, got.Records)
	fi, err := os.Stat(last.Path)
	require.NoError(t, err)
	require.Equal(t, got.GoodBytes, fi.Size())

	r, err = integrity.ScanLogs(vfs.Default, dir)
	require.NoError(t, err)
	require.Empty(t, r.Findings)
	require.Equal(t, batches-1, r.WALs[len(r.WALs)-1].Records)

	pdb, err = pebble.Open(dir, &pebble.Options{})
	require.NoError(t, err)
	defer pdb.Close()
	for i := range batches {
		_, closer, err := pdb.Get(fmt.Appendf(nil, "k%02d", i))
		if i < batches-1 {
			require.NoError(t, err, "batch %d", i)
			closer.Close()
		} else {
			require.ErrorIs(t, err, pebble.ErrNotFound, "the cut-off batch")
		}
	}
}
