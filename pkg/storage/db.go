package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/storage/integrity"
)

// ErrClosed is returned by operations on a closed DB.
var ErrClosed = errors.New("storage: closed")

// DB is levitated's time-series store: a Prometheus storage.Storage over one
// Pebble database. Samples are made durable as write-ahead records in Pebble
// (a commit returns after a synced Pebble batch) and kept in memory as
// Prometheus chunks, which checkpoints write to Pebble; see FORMAT.md.
//
// The tenant of every call is taken from its context (pkg/tenant).
type DB struct {
	pdb    *pebble.DB
	opts   Options
	logger *slog.Logger
	cache  *pebble.Cache
	// iters are the chunk iterators readers closed, for the next ones.
	iters *iterPool

	// applyMu orders the application of committed samples to memory with
	// the sequence numbers of their write-ahead records.
	applyMu sync.Mutex
	seq     uint64
	// unwritten holds the commits whose samples are in memory but whose
	// write-ahead records may not be in Pebble yet.
	unwritten unwrittenCommits
	// beforeWAL, when set by a test, runs in Commit between applying the
	// samples to memory and writing their record.
	beforeWAL func()

	walBytes       atomic.Int64
	spillBytes     atomic.Int64 // write-ahead bytes since the last spill or checkpoint
	lastCheckpoint atomic.Int64 // unix nanoseconds
	checkpointMu   sync.Mutex

	tenantsMu    sync.RWMutex
	tenants      map[string]*tenantHead
	tenantsByID  map[uint32]*tenantHead
	nextTenantID uint32

	readers readerEpochs
	// holders tracks what may hold a series outside a reader: appenders
	// (from their first look-up to the end of their commit) and
	// checkpoints. With readers, it tells when the symbols of removed
	// series can be freed (symbolTable.collect).
	holders readerEpochs

	dropMu    sync.Mutex
	dropQueue []dropBatch

	// failed holds the error that made the DB unusable (a failed sync).
	failed atomic.Pointer[error]
	// health says whether the disk takes writes (guardfs.go).
	health *health
	// flushes are Flush calls in flight, which may outlive their caller
	// when the disk held them up; Close waits for them.
	flushMu        sync.Mutex
	flushesStopped bool
	flushes        sync.WaitGroup

	closeOnce sync.Once
	closing   chan struct{}
	// bgStarted is set once the background work started, or once Close
	// began (it cannot start then); bgDone is closed when it ends.
	bgMu      sync.Mutex
	bgStarted bool
	bgDone    chan struct{}
	closed    atomic.Bool

	metrics *dbMetrics
}

// deleteWithoutRecycling deletes obsolete files, as Pebble's default cleaner
// does, but also keeps Pebble from holding obsolete write-ahead logs for
// reuse: recycled logs (up to three memtables' worth) would otherwise sit in
// the data directory as disk space that holds nothing. Pebble recycles logs
// only for cleaners that do not need file contents; the ArchiveCleaner
// embedded one level down marks this one as needing them, while
// DeleteCleaner's Clean, one level up, is the one that runs.
type deleteWithoutRecycling struct {
	pebble.DeleteCleaner
	needsContents
}

type needsContents struct{ pebble.ArchiveCleaner }

func (deleteWithoutRecycling) String() string { return "delete-without-recycling" }

// Open opens or creates the store in dir.
//
// If the disk refuses a write while Open runs (it is full, or dir is not
// writable), Pebble's own open would wait for ever; Open returns the
// *FaultError instead, naming the file, and leaves that open behind: the
// caller is expected to exit. Corruption found while opening is an error
// naming the file, wrapped around Pebble's (pebble.IsCorruptionError).
func Open(dir string, opts Options) (*DB, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	h := newHealth(opts.Logger)
	type result struct {
		db  *DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		db, err := open(dir, opts, h)
		done <- result{db, err}
	}()
	select {
	case r := <-done:
		h.opened()
		if r.err != nil {
			if ferr := h.err(); ferr != nil {
				return nil, fmt.Errorf("open storage in %s: %w", dir, ferr)
			}
		}
		return r.db, r.err
	case <-h.faulted():
		return nil, fmt.Errorf("open storage in %s: %w", dir, h.err())
	}
}

func open(dir string, opts Options, h *health) (*DB, error) {
	// Pebble charges its memtables to the block cache; size the cache so
	// that CacheSize is left for blocks with the memtables full.
	// 16 MiB memtables: Pebble allocates them outside the Go heap and
	// holds two during a burst of ingest (one being flushed): 64 MiB ones
	// kept 128 MiB resident, 32 MiB ones 64 MiB at the peak of a 1M-series
	// burst. The write-ahead records of such a burst fill 16 MiB in about
	// 2 s; smaller memtables mean more, smaller flushes (twice as many
	// for half the size, within the noise of ingest CPU and disk:
	// bench/RESULTS.md, "memory at 1M, helper mem3").
	const memTableSize = 16 << 20
	const memTables = 2 // pebble's default MemTableStopWritesThreshold
	cache := pebble.NewCache(opts.CacheSize + memTables*memTableSize)
	iters := &iterPool{}
	popts := &pebble.Options{
		FS:                 &guardFS{FS: opts.FS, h: h},
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       memTableSize,
		Logger:             newPebbleLogger(opts.Logger, h),
		EventListener:      eventListener(opts.Logger, h, iters),
		Cleaner:            deleteWithoutRecycling{},
	}
	popts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionGood })
	// Chunks are scanned, not looked up: larger blocks give zstd more
	// context across neighbouring series.
	for i := range popts.Levels {
		popts.Levels[i].BlockSize = 32 << 10
	}
	popts.EnsureDefaults()
	// Pebble opens a corrupt write-ahead log with an error naming no file,
	// and drops a torn tail of the last one silently: read them first, as
	// `levitated check` does.
	walErr, err := scanLogs(opts.FS, dir, opts.Logger)
	if err != nil {
		cache.Unref()
		return nil, err
	}
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		cache.Unref()
		if walErr != nil {
			return nil, walErr
		}
		return nil, fmt.Errorf("open pebble in %s: %w", dir, err)
	}
	if walErr != nil {
		opts.Logger.Warn("a write-ahead log that Pebble did not need to replay is unreadable (a crash left it; Pebble opened the store without it)", "finding", walErr.Error())
	}
	db := &DB{
		pdb:          pdb,
		opts:         opts,
		logger:       opts.Logger,
		cache:        cache,
		iters:        iters,
		health:       h,
		tenants:      map[string]*tenantHead{},
		tenantsByID:  map[uint32]*tenantHead{},
		nextTenantID: 1,
		closing:      make(chan struct{}),
		bgDone:       make(chan struct{}),
	}
	db.readers.init()
	db.holders.init()
	db.lastCheckpoint.Store(time.Now().UnixNano())
	start := time.Now()
	if err := db.load(); err != nil {
		_ = pdb.Close()
		cache.Unref()
		return nil, err
	}
	db.metrics = newDBMetrics(db, opts.Registerer)
	db.logger.Info("storage opened", "dir", dir, "tenants", len(db.tenants), "duration", time.Since(start))
	if !opts.CallerRunsBackground {
		db.startBackground()
		go db.background(context.Background())
	}
	return db, nil
}

// scanLogs reads the MANIFEST and the write-ahead logs of dir with
// integrity.ScanLogs: warnings (a torn tail) are logged with their counts.
// A problem of the MANIFEST is the error to refuse to start with. A problem
// of a write-ahead log is returned as walErr: the scan reads every log
// file, and a crash can leave a log that Pebble no longer replays (flushed
// before the crash, its deletion not yet durable), so the caller refuses
// with it only if Pebble's open fails too.
func scanLogs(fs vfs.FS, dir string, logger *slog.Logger) (walErr, err error) {
	r, err := integrity.ScanLogs(fs, dir)
	if err != nil {
		return nil, err
	}
	for _, f := range r.Findings {
		if f.Severity == integrity.Warning {
			logger.Warn(f.What, "file", f.Path, "remedy", f.Remedy)
		}
	}
	for _, f := range r.Problems() {
		if r.Manifest == nil || f.Path != r.Manifest.Path && strings.HasSuffix(f.Path, ".log") {
			if walErr == nil {
				walErr = f
			}
			continue
		}
		return nil, f
	}
	return walErr, nil
}

// load reads the format, tenants and series, then replays the write-ahead
// records that no checkpoint covers.
func (db *DB) load() error {
	fk := globalKey(globalFormat, "")
	v, closer, err := db.pdb.Get(fk)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := db.pdb.Set(fk, []byte(formatVersion), pebble.Sync); err != nil {
			return fmt.Errorf("write format version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read format version: %w", err)
	default:
		got := string(v)
		_ = closer.Close()
		if got != formatVersion {
			return fmt.Errorf("storage: data was written in format %q, this version reads %q", got, formatVersion)
		}
	}

	v, closer, err = db.pdb.Get(globalKey(globalCheckpoint, ""))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read checkpoint: %w", err)
	default:
		if len(v) == 8 {
			db.seq = binary.BigEndian.Uint64(v)
		}
		_ = closer.Close()
	}

	if err := db.loadTenants(); err != nil {
		return err
	}
	for _, th := range db.tenants {
		if err := db.loadSeries(th); err != nil {
			return err
		}
		if err := db.loadTenantState(th); err != nil {
			return err
		}
	}
	for _, th := range db.tenants {
		if err := db.replay(th); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) loadTenants() error {
	p := TenantPrefix(0, globalTenantName)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)})
	if err != nil {
		return fmt.Errorf("read tenants: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		name := string(it.Key()[len(p):])
		if len(it.Value()) != 4 {
			return fmt.Errorf("tenant %q: id of %d bytes: %w", name, len(it.Value()), errCorruptValue)
		}
		id := binary.BigEndian.Uint32(it.Value())
		th := newTenantHead(id, name)
		db.tenants[name] = th
		db.tenantsByID[id] = th
		db.nextTenantID = max(db.nextTenantID, id+1)
	}
	return it.Error()
}

func (db *DB) loadSeries(th *tenantHead) error {
	p := TenantPrefix(th.id, kindSeries)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)})
	if err != nil {
		return fmt.Errorf("read series of tenant %q: %w", th.name, err)
	}
	defer it.Close()
	var sb labels.ScratchBuilder
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != prefixLen+8 {
			return fmt.Errorf("series key of %d bytes: %w", len(k), errCorruptKey)
		}
		ref := binary.BigEndian.Uint64(k[prefixLen:])
		first, last, ls, err := decodeSeriesRecord(it.Value(), &sb)
		if err != nil {
			return fmt.Errorf("series %d of tenant %q: %w", ref, th.name, err)
		}
		s := newMemSeries(ref, th.symbols.intern(ls))
		s.flags.set(flagDurable, true)
		s.flags.set(flagLoaded, false)
		s.storedMaxT = math.MaxInt64
		s.firstDay, s.lastDay = first, last
		th.addLoaded(s, ls.Hash())
	}
	return it.Error()
}

func (db *DB) loadTenantState(th *tenantHead) error {
	for _, f := range []struct {
		name string
		v    *atomic.Int64
	}{{"maxt", &th.maxT}, {"mint", &th.minT}} {
		v, closer, err := db.pdb.Get(tenantStateKey(th.id, f.name))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s of tenant %q: %w", f.name, th.name, err)
		}
		if len(v) == 8 {
			f.v.Store(getInt64(v))
		}
		_ = closer.Close()
	}
	return nil
}

// replay applies the write-ahead records of a tenant that no checkpoint
// covers to memory, in sequence order. Applying a record twice is harmless:
// samples already present are skipped.
func (db *DB) replay(th *tenantHead) error {
	p := TenantPrefix(th.id, kindWAL)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: PrefixEnd(p)})
	if err != nil {
		return fmt.Errorf("read WAL of tenant %q: %w", th.name, err)
	}
	defer it.Close()
	o := db.chunkOpts()
	records, samples, skipped := 0, 0, 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != prefixLen+8 {
			return fmt.Errorf("WAL key of %d bytes: %w", len(k), errCorruptKey)
		}
		seq := binary.BigEndian.Uint64(k[prefixLen:])
		db.seq = max(db.seq, seq)
		db.walBytes.Add(int64(len(it.Value())))
		err := decodeWAL(it.Value(), func(ref uint64, smp sample) error {
			s := th.getByRef(ref)
			if s == nil {
				// Retention removed the series after the record was
				// written: its samples are expired.
				skipped++
				return nil
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if err := db.ensureLoaded(th, s); err != nil {
				return err
			}
			if _, err := db.applyLocked(th, s, smp, o, true); err != nil {
				return err
			}
			th.observeTime(smp.t)
			samples++
			return nil
		})
		if err != nil {
			return fmt.Errorf("replay WAL record %d of tenant %q: %w", seq, th.name, err)
		}
		records++
	}
	if records > 0 {
		db.logger.Info("replayed write-ahead records", "tenant", th.name, "records", records, "samples", samples, "skipped_expired", skipped)
	}
	return it.Error()
}

func (db *DB) chunkOpts() chunkOpts {
	return chunkOpts{samplesPerChunk: db.opts.SamplesPerChunk}
}

// checkUsable returns the error that keeps the DB from accepting writes.
func (db *DB) checkUsable() error {
	if db.closed.Load() {
		return ErrClosed
	}
	if err := db.health.refuse(); err != nil {
		return err
	}
	if p := db.failed.Load(); p != nil {
		return fmt.Errorf("storage: unusable after an earlier write failure: %w", *p)
	}
	return nil
}

// WriteError returns why the store does not take writes now (a
// *FaultError: the disk is full or not writable, or the store failed), or
// nil. Readiness probes report it.
func (db *DB) WriteError() error {
	if db.closed.Load() {
		return ErrClosed
	}
	if err := db.health.err(); err != nil {
		return err
	}
	if p := db.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Failed is closed when the store fails for good (a failed fsync, an I/O
// error, corruption, a fatal Pebble error): it refuses writes until the
// process restarts, and the server should exit. WriteError says why.
func (db *DB) Failed() <-chan struct{} { return db.health.fatalled() }

// CommitSync commits b with pebble.Sync, then calls done (if not nil) with
// the commit's error, and owns b. It returns that error, or a *FaultError
// as soon as the disk refuses writes: the commit then goes on in the
// background and completes once the disk takes writes again (or never, if
// the store failed), and done is called then; either way the caller's
// write was not acknowledged. While the disk refuses writes CommitSync
// fails at once (done is called with that error). The event store commits
// through it.
func (db *DB) CommitSync(b *pebble.Batch, done func(error)) error {
	if err := db.checkUsable(); err != nil {
		if done != nil {
			done(err)
		}
		_ = b.Close()
		return err
	}
	faulted := db.health.faulted()
	result := make(chan error, 1)
	go func() {
		err := b.Commit(pebble.Sync)
		if done != nil {
			done(err)
		}
		_ = b.Close()
		result <- err
	}()
	select {
	case err := <-result:
		return err
	case <-faulted:
		if err := db.health.err(); err != nil {
			return err
		}
		return <-result
	}
}

func (db *DB) fail(err error) {
	db.failed.CompareAndSwap(nil, &err)
	db.logger.Error("storage write failed; refusing further writes", "err", err)
}

// StartTime returns the oldest sample time of the default tenant, or
// math.MaxInt64 if it has none.
func (db *DB) StartTime() (int64, error) {
	th := db.tenantFor(context.Background())
	if th == nil {
		return math.MaxInt64, nil
	}
	return th.minT.Load(), nil
}

// Close writes a final checkpoint and closes Pebble. If the disk refuses
// writes, or the store failed, Close does not wait for Pebble (whose held
// operations may never finish): it returns the fault, and the caller is
// expected to exit; every acknowledged write is in Pebble's write-ahead
// log and replayed at the next start.
func (db *DB) Close() error {
	var err error
	db.closeOnce.Do(func() {
		done := make(chan error, 1)
		go func() { done <- db.close() }()
		select {
		case err = <-done:
		case <-db.health.faulted():
			if ferr := db.health.err(); ferr != nil {
				db.closed.Store(true)
				err = fmt.Errorf("close storage without a final checkpoint: %w", ferr)
				return
			}
			err = <-done
		}
	})
	return err
}

func (db *DB) close() error {
	var err error
	close(db.closing)
	db.bgMu.Lock()
	started := db.bgStarted
	db.bgStarted = true
	db.bgMu.Unlock()
	if started {
		<-db.bgDone
	}
	db.flushMu.Lock()
	db.flushesStopped = true
	db.flushMu.Unlock()
	db.flushes.Wait()
	if db.failed.Load() == nil {
		if cerr := db.checkpoint(context.Background()); cerr != nil {
			err = fmt.Errorf("final checkpoint: %w", cerr)
		}
	}
	db.closed.Store(true)
	// Wait for in-flight commits that passed checkUsable.
	db.applyMu.Lock()
	db.applyMu.Unlock()
	if db.metrics != nil {
		db.metrics.unregister()
	}
	db.iters.close()
	if cerr := db.pdb.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close pebble: %w", cerr)
	}
	db.cache.Unref()
	return err
}

// RunBackground runs the store's checkpoints, spills, retention and
// memory reclamation until ctx ends or Close begins, when the store was
// opened with CallerRunsBackground; Close writes the final checkpoint
// after it returns. It may run once.
func (db *DB) RunBackground(ctx context.Context) error {
	if !db.opts.CallerRunsBackground {
		return errors.New("storage: the store runs its background work itself (Options.CallerRunsBackground is not set)")
	}
	if !db.startBackground() {
		return errors.New("storage: RunBackground called twice, or after Close")
	}
	db.background(ctx)
	return nil
}

// startBackground marks the background work started, unless it was
// already or Close began; the caller then runs background.
func (db *DB) startBackground() bool {
	db.bgMu.Lock()
	defer db.bgMu.Unlock()
	if db.bgStarted {
		return false
	}
	db.bgStarted = true
	return true
}

// background runs checkpoints, retention and memory reclamation until ctx
// ends or Close begins.
func (db *DB) background(ctx context.Context) {
	defer close(db.bgDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastRetention := time.Time{}
	for {
		select {
		case <-db.closing:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if db.failed.Load() != nil || db.health.err() != nil {
			continue
		}
		since := time.Since(time.Unix(0, db.lastCheckpoint.Load()))
		if db.walBytes.Load() >= db.opts.CheckpointWALBytes || (since >= db.opts.CheckpointInterval && db.walBytes.Load() > 0) {
			if err := db.checkpoint(context.Background()); err != nil {
				db.logger.Error("checkpoint", "err", err)
			}
		} else if db.spillBytes.Load() >= spillClosedBytes {
			if err := db.spillClosed(context.Background()); err != nil {
				db.logger.Error("spill closed chunks", "err", err)
			}
		}
		db.reclaim()
		if time.Since(lastRetention) >= retentionInterval {
			lastRetention = time.Now()
			if err := db.applyRetention(context.Background()); err != nil {
				db.logger.Error("retention", "err", err)
			}
		}
	}
}

// retentionInterval is how often expired partitions are looked for.
const retentionInterval = 10 * time.Minute
