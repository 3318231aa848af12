package storage_test

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/storage/storagetest"
)

func TestPromQLBuiltinTmp(t *testing.T) {
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	promqltest.RunBuiltinTestsWithStorage(t, engine, func(tb testing.TB) storage.Storage { return storagetest.New(tb) })
}
