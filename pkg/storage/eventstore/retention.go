package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/levitated/levitated/pkg/storage"
)

// EnforceRetention deletes, in every tenant, the events and windows whose
// time is before now minus Options.Retention, the open-window entries of
// those starts and the idempotency keys of those events. Events and
// windows go by range deletion; the two small index kinds are scanned.
// The server calls it from its retention loop.
func (s *Store) EnforceRetention(ctx context.Context, now time.Time) error {
	cutoff := timeNanos(now.Add(-s.opts.Retention), 0)
	tenants, err := s.tenants()
	if err != nil {
		return err
	}
	for _, t := range tenants {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.DeleteBefore(ctx, t, cutoff); err != nil {
			return err
		}
	}
	return nil
}

// tenants lists the tenants that have event-store keys.
func (s *Store) tenants() ([]uint32, error) { return s.ns.Tenants() }

// DeleteBefore deletes the events of tenant whose time, in Unix
// nanoseconds, is before cutoff (see EnforceRetention). The deletion is
// committed with pebble.Sync.
func (s *Store) DeleteBefore(ctx context.Context, tenant uint32, cutoff uint64) error {
	b := s.ns.NewBatch()
	committed := false
	defer func() {
		if !committed {
			_ = b.Close()
		}
	}()
	for _, kind := range []byte{kindEvent, kindWindow} {
		if err := b.DeleteRange(prefix(tenant, kind), timeKey(tenant, kind, cutoff), nil); err != nil {
			return err
		}
	}
	// Open windows: key is name 0x00 time seq.
	op := prefix(tenant, kindOpen)
	if err := s.scanDelete(ctx, b, op, func(k, _ []byte) bool {
		return len(k) >= 16 && idFromBytes(k[len(k)-16:]).ts < cutoff
	}); err != nil {
		return err
	}
	ip := prefix(tenant, kindIdem)
	if err := s.scanDelete(ctx, b, ip, func(_, v []byte) bool {
		id, _, err := decodeIdem(v)
		return err != nil || id.ts < cutoff
	}); err != nil {
		return err
	}
	committed = true // Commit owns the batch
	err := s.ns.Commit(b, true)
	s.changed(tenant)
	if err != nil {
		return fmt.Errorf("commit retention deletion: %w", err)
	}
	return nil
}

func (s *Store) scanDelete(ctx context.Context, b *pebble.Batch, p []byte, del func(k, v []byte) bool) error {
	it, err := s.ns.NewIter(p, storage.PrefixEnd(p))
	if err != nil {
		return fmt.Errorf("scan for retention: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if del(it.Key(), it.Value()) {
			if err := b.Delete(it.Key(), nil); err != nil {
				return err
			}
		}
	}
	return it.Error()
}
