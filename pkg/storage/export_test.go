package storage

import (
	"context"

	"github.com/cockroachdb/pebble/v2"
)

// CheckpointForTest writes every in-memory chunk to Pebble and drops from
// memory what readers can find there, so that reads go to Pebble.
func CheckpointForTest(db *DB) error {
	if err := db.checkpoint(context.Background()); err != nil {
		return err
	}
	db.reclaim()
	return nil
}

// SpillForTest writes the closed chunks not yet in Pebble (no checkpoint)
// and drops from memory what readers can find there.
func SpillForTest(db *DB) error {
	if err := db.spillClosed(context.Background()); err != nil {
		return err
	}
	db.reclaim()
	return nil
}

// RetentionForTest runs one retention pass.
func RetentionForTest(db *DB) error { return db.applyRetention(context.Background()) }

// PebbleForTest is the database, for tests that dump every key.
func PebbleForTest(db *DB) *pebble.DB { return db.pdb }

// SetBeforeWALForTest makes every Commit call f after it applied its samples
// to memory and before it writes their write-ahead record.
func SetBeforeWALForTest(db *DB, f func()) { db.beforeWAL = f }
