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
	db := Open(t, t.TempDir(), opts...)
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close storage: %v", err)
		}
	})
	return db
}

// Open opens a store in dir, for tests that close (or crash) and reopen it
// themselves. Options may adjust the defaults (FS: a crashable one).
func Open(t testing.TB, dir string, opts ...func(*storage.Options)) *storage.DB {
	t.Helper()
	o := storage.Options{
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.DiscardHandler),
	}
	for _, f := range opts {
		f(&o)
	}
	db, err := storage.Open(dir, o)
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	return db
}

// Namespace returns owner's namespace of db.
func Namespace(t testing.TB, db *storage.DB, owner storage.Owner) *storage.Namespace {
	t.Helper()
	ns, err := db.Namespace(owner)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
