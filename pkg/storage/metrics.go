package storage

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/prometheus/client_golang/prometheus"
)

type dbMetrics struct {
	reg                prometheus.Registerer
	collectors         []prometheus.Collector
	samplesAppended    prometheus.Counter
	commitConflicts    prometheus.Counter
	checkpoints        prometheus.Counter
	checkpointDuration prometheus.Histogram
	seriesRemoved      prometheus.Counter
}

func newDBMetrics(db *DB, reg prometheus.Registerer) *dbMetrics {
	m := &dbMetrics{
		reg: reg,
		samplesAppended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_storage_samples_appended_total",
			Help: "Samples committed to the store.",
		}),
		commitConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_storage_commit_conflicts_total",
			Help: "Samples dropped at commit because a concurrent commit wrote another value at the same timestamp.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_storage_checkpoints_total",
			Help: "Checkpoints that wrote in-memory chunks to Pebble.",
		}),
		checkpointDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "levitated_storage_checkpoint_duration_seconds",
			Help:    "Duration of checkpoints.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		seriesRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_storage_series_removed_total",
			Help: "Series removed by retention.",
		}),
	}
	m.collectors = []prometheus.Collector{
		m.samplesAppended, m.commitConflicts, m.checkpoints, m.checkpointDuration, m.seriesRemoved,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "levitated_storage_series",
			Help: "Series in memory, all tenants.",
		}, func() float64 {
			n := 0
			for _, th := range db.tenantHeads() {
				n += th.numSeries()
			}
			return float64(n)
		}),
		chunkIterators("made", &db.iters.made),
		chunkIterators("reused", &db.iters.reused),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "levitated_storage_wal_bytes",
			Help: "Bytes of write-ahead records not yet covered by a checkpoint.",
		}, func() float64 { return float64(db.walBytes.Load()) }),
		newPebbleCollector(db),
	}
	if reg != nil {
		for _, c := range m.collectors {
			if err := reg.Register(c); err != nil {
				db.logger.Warn("register storage metric", "err", err)
			}
		}
	}
	return m
}

// chunkIterators is levitated_storage_chunk_iterators_total of one kind
// (iterator="made" or "reused"), counted by n.
func chunkIterators(kind string, n *atomic.Int64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "levitated_storage_chunk_iterators_total",
		Help:        "Pebble iterators over a partition's chunks that readers used: made for them, or reused from the last reader of the partition (none written since).",
		ConstLabels: prometheus.Labels{"iterator": kind},
	}, func() float64 { return float64(n.Load()) })
}

func (m *dbMetrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// pebbleCollector exports Pebble's own metrics (pebble.Metrics).
type pebbleCollector struct {
	db    *DB
	descs map[string]*prometheus.Desc
}

func newPebbleCollector(db *DB) *pebbleCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("levitated_pebble_"+name, help, labels, nil)
	}
	return &pebbleCollector{db: db, descs: map[string]*prometheus.Desc{
		"disk":        d("disk_space_usage_bytes", "Bytes used on disk by the Pebble database."),
		"level_files": d("level_files", "SSTable files per LSM level.", "level"),
		"level_bytes": d("level_bytes", "Bytes of SSTables per LSM level.", "level"),
		"compactions": d("compactions_total", "Compactions completed."),
		"flushes":     d("flushes_total", "Memtable flushes completed."),
		"memtable":    d("memtable_bytes", "Bytes allocated to memtables."),
		"wal_bytes":   d("wal_bytes_written_total", "Bytes written to Pebble's write-ahead log."),
		"wal_files":   d("wal_files", "Live write-ahead log files."),
		"cache_size":  d("block_cache_bytes", "Bytes in the block cache."),
		"cache_hits":  d("block_cache_hits_total", "Block cache hits."),
		"cache_miss":  d("block_cache_misses_total", "Block cache misses."),
		"read_amp":    d("read_amplification", "Sublevels a point read may consult."),
	}}
}

func (c *pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	if c.db.closed.Load() {
		return
	}
	m := c.db.pdb.Metrics()
	g := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	cnt := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v)
	}
	g("disk", float64(m.DiskSpaceUsage()))
	for i, l := range m.Levels {
		g("level_files", float64(l.TablesCount), fmt.Sprint(i))
		g("level_bytes", float64(l.TablesSize), fmt.Sprint(i))
	}
	cnt("compactions", float64(m.Compact.Count))
	cnt("flushes", float64(m.Flush.Count))
	g("memtable", float64(m.MemTable.Size))
	cnt("wal_bytes", float64(m.WAL.BytesWritten))
	g("wal_files", float64(m.WAL.Files))
	g("cache_size", float64(m.BlockCache.Size))
	cnt("cache_hits", float64(m.BlockCache.Hits))
	cnt("cache_miss", float64(m.BlockCache.Misses))
	g("read_amp", float64(m.ReadAmp()))
}

// pebbleLogger routes Pebble's logs to slog. Errors are rate-limited:
// Pebble retries a failing flush or compaction at once, and logs each
// failure.
type pebbleLogger struct {
	l      *slog.Logger
	h      *health
	errors *rateLimitedLog
}

func newPebbleLogger(l *slog.Logger, h *health) pebbleLogger {
	return pebbleLogger{l: l, h: h, errors: &rateLimitedLog{logger: l, interval: 10 * time.Second}}
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.errors.log(slog.LevelError, fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf marks the store failed and parks the calling goroutine: Pebble
// calls it where it cannot go on (a commit that failed, a MANIFEST that
// could not be written, a broken invariant), often with its mutexes held,
// so it must neither return nor unwind. The process then exits through the
// server's shutdown, which does not wait for Pebble.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	for _, a := range args {
		if e, ok := a.(error); ok {
			err = fmt.Errorf("%s: %w", err.Error(), e)
			break
		}
	}
	p.h.die(&FaultError{Op: "pebble", Path: "", Err: err})
	park()
}

// eventListener reports corruption and background errors found by Pebble
// to health and the log, instead of Pebble's default of exiting through
// Fatalf. The read that found the corruption gets an error naming the
// file.
func eventListener(logger *slog.Logger, h *health, iters *iterPool) *pebble.EventListener {
	bg := &rateLimitedLog{logger: logger, interval: 10 * time.Second}
	return &pebble.EventListener{
		// The pooled chunk iterators pin the memtables and files a
		// flush or a compaction replaced.
		FlushEnd:      func(pebble.FlushInfo) { iters.stale() },
		CompactionEnd: func(pebble.CompactionInfo) { iters.stale() },
		BackgroundError: func(err error) {
			// One line: Pebble's errors print their stacks on more.
			msg, _, _ := strings.Cut(err.Error(), "\n")
			bg.log(slog.LevelError, "pebble background error", "err", msg)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			h.die(&FaultError{Op: "read", Path: info.Path, Err: info.Details})
		},
	}
}
