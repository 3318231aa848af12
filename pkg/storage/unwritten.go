package storage

import (
	"context"
	"sync"
)

// unwrittenCommits tracks the commits whose samples are applied to memory
// but whose write-ahead records may not be in Pebble yet: a commit applies
// its samples under applyMu and writes its record after releasing it, so a
// checkpoint or a spill scanning the series meanwhile can put some of those
// samples into chunks. Its chunk batch must not reach Pebble before their
// records do: a sync of the batch (its own, or any later commit's) would
// otherwise make part of a batch durable whose record a crash then loses —
// a batch half present after recovery (TestCrashRecovery). Writing the
// records first keeps batches whole: replaying a record whose samples a
// chunk already holds is harmless.
type unwrittenCommits struct {
	mu      sync.Mutex
	pending map[uint64]struct{}
	ended   chan struct{} // closed and replaced when a commit ends
}

// begin records seq as applied and unwritten; the caller holds applyMu.
func (u *unwrittenCommits) begin(seq uint64) {
	u.mu.Lock()
	if u.pending == nil {
		u.pending = map[uint64]struct{}{}
		u.ended = make(chan struct{})
	}
	u.pending[seq] = struct{}{}
	u.mu.Unlock()
}

// end records that seq's record is in Pebble, or will never be.
func (u *unwrittenCommits) end(seq uint64) {
	u.mu.Lock()
	delete(u.pending, seq)
	close(u.ended)
	u.ended = make(chan struct{})
	u.mu.Unlock()
}

// wait returns once no commit numbered upTo or lower is unwritten.
func (u *unwrittenCommits) wait(ctx context.Context, upTo uint64) error {
	for {
		u.mu.Lock()
		blocked := false
		for seq := range u.pending {
			if seq <= upTo {
				blocked = true
				break
			}
		}
		ended := u.ended
		u.mu.Unlock()
		if !blocked {
			return nil
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
