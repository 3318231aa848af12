package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a DB. The zero value of a field means its default; see
// DefaultOptions.
type Options struct {
	// Retention is how long samples, exemplars and events are kept, measured
	// back from the newest sample of each tenant as Prometheus does. Expired
	// data is dropped a whole day partition at a time.
	Retention time.Duration
	// OutOfOrderWindow is how far behind the newest sample of its tenant a
	// sample may be and still be accepted out of order. 0 after EnsureDefaults
	// means the default; use a negative value to disable out-of-order ingest.
	OutOfOrderWindow time.Duration
	// Registerer receives the storage's and Pebble's metrics. May be nil.
	Registerer prometheus.Registerer
	// Logger receives the storage's logs. Nil means slog's default logger.
	Logger *slog.Logger

	// SamplesPerChunk is the target number of float samples per chunk
	// (120, Prometheus' figure: an instant query decodes its chunks from
	// the start, so chunks 4× longer made instant queries up to 1.8×
	// slower for 3 % fewer bytes on disk; see bench/RESULTS.md).
	SamplesPerChunk int
	// CheckpointInterval is how often in-memory chunks are written to Pebble
	// so that the write-ahead records they cover can be dropped.
	CheckpointInterval time.Duration
	// CheckpointWALBytes starts a checkpoint early once this many bytes of
	// write-ahead records have accumulated.
	CheckpointWALBytes int64
	// CacheSize is Pebble's block cache size in bytes.
	CacheSize int64
	// CallerRunsBackground: the store's background work (checkpoints,
	// spills, retention, memory reclamation) runs in DB.RunBackground,
	// which the caller runs with its other background jobs (the server
	// does). Otherwise Open starts it and Close stops it.
	CallerRunsBackground bool

	// OnChange, if set, is called with a tenant's name and a time range
	// [mint, maxt] (ms) after samples in it became visible to queriers
	// (appended, in order or out of order) or were deleted (retention), for
	// every such change: a results cache invalidates what it read there.
	// It must be quick and must not call back into the store.
	OnChange func(tenant string, mint, maxt int64)

	// FS is the filesystem Pebble writes to; nil means the OS filesystem.
	// Crash tests pass vfs.NewCrashableMem().
	FS vfs.FS
}

// Defaults.
const (
	DefaultRetention          = 15 * 24 * time.Hour
	DefaultOutOfOrderWindow   = 10 * time.Minute
	DefaultSamplesPerChunk    = 120
	DefaultCheckpointInterval = 10 * time.Minute
	DefaultCheckpointWALBytes = 256 << 20
	DefaultCacheSize          = 128 << 20
)

// DefaultOptions returns the options used when a field is left zero.
func DefaultOptions() Options {
	o := Options{}
	o.EnsureDefaults()
	return o
}

// EnsureDefaults replaces zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.OutOfOrderWindow == 0 {
		o.OutOfOrderWindow = DefaultOutOfOrderWindow
	}
	if o.SamplesPerChunk == 0 {
		o.SamplesPerChunk = DefaultSamplesPerChunk
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.CheckpointWALBytes == 0 {
		o.CheckpointWALBytes = DefaultCheckpointWALBytes
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
}

// Validate reports every invalid field in one error.
func (o *Options) Validate() error {
	var errs []error
	if o.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("storage: Retention %s is below the minimum of 1h", o.Retention))
	}
	if o.OutOfOrderWindow > o.Retention {
		errs = append(errs, fmt.Errorf("storage: OutOfOrderWindow %s exceeds Retention %s", o.OutOfOrderWindow, o.Retention))
	}
	if o.SamplesPerChunk < 4 || o.SamplesPerChunk > 4096 {
		errs = append(errs, fmt.Errorf("storage: SamplesPerChunk %d is outside [4, 4096]", o.SamplesPerChunk))
	}
	if o.CheckpointInterval < time.Second {
		errs = append(errs, fmt.Errorf("storage: CheckpointInterval %s is below the minimum of 1s", o.CheckpointInterval))
	}
	if o.CheckpointWALBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("storage: CheckpointWALBytes %d is below the minimum of 1MiB", o.CheckpointWALBytes))
	}
	if o.CacheSize < 1<<20 {
		errs = append(errs, fmt.Errorf("storage: CacheSize %d is below the minimum of 1MiB", o.CacheSize))
	}
	return errors.Join(errs...)
}

func (o *Options) oooWindowMillis() int64 {
	if o.OutOfOrderWindow < 0 {
		return 0
	}
	return o.OutOfOrderWindow.Milliseconds()
}
