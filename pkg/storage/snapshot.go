package storage

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
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
		return nil
	})
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
