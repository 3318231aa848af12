package storage

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/levitated/levitated/pkg/storage/integrity"
)

// Snapshot writes a consistent copy of the whole store (the samples and
// events of every tenant, and everything else kept in Pebble) to dir,
// which must not exist yet: a Pebble checkpoint, taken after a sync of the
// write-ahead log, whose tables are hard links when dir is on the data
// directory's filesystem (copies otherwise) and whose write-ahead logs are
// copies. A levitated started on dir holds every write acknowledged before
// Snapshot was called; writes go on meanwhile.
//
// If the disk refuses writes, Snapshot returns the *FaultError at once;
// the checkpoint goes on in the background and completes (leaving dir)
// once the disk takes writes again, or never if the store failed.
func (db *DB) Snapshot(ctx context.Context, dir string) error {
	if err := db.checkUsable(); err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("snapshot to %s: %w", dir, os.ErrExist)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("snapshot to %s: %w", dir, err)
	}
	return db.runHeld(func() error {
		if err := db.pdb.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
			return fmt.Errorf("snapshot to %s: %w", dir, err)
		}
		trimmed, err := trimTornLog(dir)
		if err != nil {
			return fmt.Errorf("snapshot to %s: %w", dir, err)
		}
		if trimmed.Path != "" {
			db.logger.Info("snapshot: the last write-ahead log was copied while a batch was being written; the copy ends at the last whole batch",
				"file", trimmed.Path, "batches", trimmed.Records, "bytes_dropped", trimmed.Size-trimmed.GoodBytes)
		}
		return nil
	})
}

// trimTornLog cuts the last write-ahead log of the checkpoint in dir back
// to its last whole batch, and returns its stats if it did. Pebble copies
// the logs whole while writes go on, after syncing what was written before
// the checkpoint: a batch being appended while the copy is read can end up
// cut off in it. That batch was written after the checkpoint began, so the
// snapshot owes nothing to it; the copy would start (Pebble drops a torn
// tail of the last log), but `levitated check` would warn about a backup
// that lost nothing. Any other damage is left for check to report.
func trimTornLog(dir string) (integrity.LogStats, error) {
	r, err := integrity.ScanLogs(vfs.Default, dir)
	if err != nil {
		return integrity.LogStats{}, err
	}
	if len(r.WALs) == 0 {
		return integrity.LogStats{}, nil
	}
	last := r.WALs[len(r.WALs)-1]
	if !errors.Is(last.Err, record.ErrUnexpectedEOF) {
		return integrity.LogStats{}, nil
	}
	f, err := os.OpenFile(last.Path, os.O_WRONLY, 0)
	if err != nil {
		return integrity.LogStats{}, fmt.Errorf("trim the torn tail of the copied write-ahead log: %w", err)
	}
	err = f.Truncate(last.GoodBytes)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return integrity.LogStats{}, fmt.Errorf("trim the torn tail of the copied write-ahead log %s to %d bytes: %w", last.Path, last.GoodBytes, err)
	}
	return last, nil
}

// runHeld runs fn, which writes to the disk, in a goroutine that Close
// waits for, and returns its error, or the fault as soon as the disk
// refuses writes (fn then finishes in the background).
func (db *DB) runHeld(fn func() error) error {
	faulted := db.health.faulted()
	done := make(chan error, 1)
	db.flushMu.Lock()
	if db.closed.Load() || db.flushesStopped {
		db.flushMu.Unlock()
		return ErrClosed
	}
	db.flushes.Add(1)
	db.flushMu.Unlock()
	go func() {
		defer db.flushes.Done()
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-faulted:
		if err := db.health.err(); err != nil {
			return err
		}
		return <-done
	}
}
