package storage_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/promqltest"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// TestPromQLBuiltinStorageModes runs Prometheus' built-in PromQL test files
// with the data read back three ways: from memory, from Pebble after a
// checkpoint, and after the store is closed and reopened (write-ahead
// replay and lazily loaded series). The engine-level run, through
// pkg/promql, is in that package.
func TestPromQLBuiltinStorageModes(t *testing.T) {
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	modes := map[string]func(testing.TB) promstorage.Storage{
		"memory": func(tb testing.TB) promstorage.Storage { return storagetest.New(tb) },
		"pebble": func(tb testing.TB) promstorage.Storage {
			db := storagetest.New(tb)
			return &hookStorage{DB: db, afterCommit: func() error { return storage.CheckpointForTest(db) }}
		},
		"reopen": func(tb testing.TB) promstorage.Storage { return newReopeningStorage(tb) },
	}
	for name, newStorage := range modes {
		t.Run(name, func(t *testing.T) {
			promqltest.RunBuiltinTestsWithStorage(t, engine, newStorage)
		})
	}
}

// hookStorage runs afterCommit after every successful commit.
type hookStorage struct {
	*storage.DB
	afterCommit func() error
}

func (s *hookStorage) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return &hookAppender{AppenderV2: s.DB.AppenderV2(ctx), after: s.afterCommit}
}

type hookAppender struct {
	promstorage.AppenderV2
	after func() error
}

func (a *hookAppender) Commit() error {
	if err := a.AppenderV2.Commit(); err != nil {
		return err
	}
	return a.after()
}

// reopeningStorage closes and reopens the store after every commit.
type reopeningStorage struct {
	hookStorage
	tb  testing.TB
	dir string
}

func openAt(tb testing.TB, dir string) *storage.DB {
	db, err := storage.Open(dir, storage.Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(tb, err)
	return db
}

func newReopeningStorage(tb testing.TB) *reopeningStorage {
	s := &reopeningStorage{tb: tb, dir: tb.TempDir()}
	s.DB = openAt(tb, s.dir)
	s.afterCommit = func() error {
		if err := s.DB.Close(); err != nil {
			return err
		}
		s.DB = openAt(tb, s.dir)
		return nil
	}
	return s
}

func (s *reopeningStorage) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return &hookAppender{AppenderV2: s.DB.AppenderV2(ctx), after: s.afterCommit}
}
