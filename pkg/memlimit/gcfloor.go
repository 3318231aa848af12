package memlimit

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// MinHeadroom is the least the heap may grow between two collections when
// levitated chooses the collector's percent. With DefaultGCPercent alone a
// small heap is collected very often: at 10k series the live heap is ~30
// MiB, GOGC 30 lets it grow by 9 MiB, and one range query over all of it
// allocates more than that — 65–75 collections in a pass of 120 range
// queries, against 11–16 with this floor and 5–6 with a 48 MiB one; the
// grouped queries' CPU fell by ~5 % with this floor and 5–15 % with 48 MiB
// (bench/RESULTS.md, "The collector's floor at 10k series"). The floor is
// small because it costs memory where it applies: at 100k series (a live
// heap of ~70 MiB after ingest) 48 MiB raised the peak RSS by 25–40 MiB for
// no CPU the measurement could see, this one by 11–13 MiB (the percent
// there is 33 instead of 30); from a live heap of 80 MiB up it changes
// nothing.
const MinHeadroom = 24 << 20

// maxFloorPercent bounds the percent the floor asks for, for a nearly
// empty heap.
const maxFloorPercent = 400

// FloorPercent is the collector's percent for a live heap of live bytes:
// DefaultGCPercent, or more when that would let the heap grow by less
// than MinHeadroom.
func FloorPercent(live uint64) int {
	if live == 0 {
		return maxFloorPercent
	}
	p := int((MinHeadroom*100 + live - 1) / live)
	return min(max(p, DefaultGCPercent), maxFloorPercent)
}

// liveHeap is the runtime's metric of the heap that survived the last
// collection.
const liveHeap = "/gc/heap/live:bytes"

// TuneGC keeps the collector's percent at FloorPercent of the live heap,
// read every interval, until ctx is done; it is not started when GOGC is
// set (ApplyGCPercent returned -1: the operator's choice stands). The
// percent is set only when it moves by a tenth or more: SetGCPercent
// stops the world for a moment. A memory limit (Apply) still bounds the
// heap whatever the percent. read and set are the runtime's except in
// tests.
func TuneGC(ctx context.Context, interval time.Duration, read func() uint64, set func(int) int) {
	if read == nil {
		sample := []metrics.Sample{{Name: liveHeap}}
		read = func() uint64 {
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return 0
			}
			return sample[0].Value.Uint64()
		}
	}
	if set == nil {
		set = debug.SetGCPercent
	}
	cur := DefaultGCPercent
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if live := read(); live > 0 {
			if p := FloorPercent(live); p*10 >= cur*11 || p*10 <= cur*9 {
				set(p)
				cur = p
			}
		}
		select {
		case <-ctx.Done():
			set(DefaultGCPercent)
			return
		case <-t.C:
		}
	}
}
