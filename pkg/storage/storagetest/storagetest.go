// Package storagetest provides a real store for tests.
package storagetest

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levitated/levitated/pkg/storage"
)

// New returns a store in t.TempDir(), closed by t.Cleanup. Options may
// adjust the defaults.
func New(t testing.TB, opts ...func(*storage.Options)) *storage.DB {
	t.Helper()
	o := storage.Options{
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.DiscardHandler),
	}
	for _, f := range opts {
		f(&o)
	}
	db, err := storage.Open(t.TempDir(), o)
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close storage: %v", err)
		}
	})
	return db
}
