package storage

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

// TestRunBackground: a store opened with CallerRunsBackground checkpoints
// only while its caller runs RunBackground, which runs once; Close after
// it, or without it ever running, returns.
func TestRunBackground(t *testing.T) {
	ctx := context.Background()
	db, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), CallerRunsBackground: true, CheckpointInterval: time.Second})
	require.NoError(t, err)
	app := db.AppenderV2(ctx)
	_, err = app.Append(0, labels.FromStrings("__name__", "up"), 0, time.Now().UnixMilli(), 1, nil, nil, promstorage.AppendV2Options{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	require.Positive(t, db.walBytes.Load())

	bctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- db.RunBackground(bctx) }()
	require.Eventually(t, func() bool { return db.walBytes.Load() == 0 }, 30*time.Second, 10*time.Millisecond, "no checkpoint while RunBackground runs")
	require.Error(t, db.RunBackground(ctx), "a second RunBackground")
	stop()
	require.NoError(t, <-done)
	require.NoError(t, db.Close())

	db, err = Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), CallerRunsBackground: true})
	require.NoError(t, err)
	require.NoError(t, db.Close(), "Close of a store whose background never ran")
	require.Error(t, db.RunBackground(ctx), "RunBackground after Close")

	db, err = Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.Error(t, db.RunBackground(ctx), "RunBackground of a store that runs its own")
	require.NoError(t, db.Close())
}
