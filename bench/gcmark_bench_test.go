package bench

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"
)

// BenchmarkHeadGCMark is what the store's in-memory head costs the Go
// collector in every cycle: 100k series (redgen) with 480 samples each at
// 15 s (peer-bench's 100k × 2 h), flushed, then full collections; reported
// per cycle as the collector's CPU (gc-cpu-ms/cycle, runtime/metrics'
// /cpu/classes/gc/total), the heap's objects and its scannable bytes
// (/gc/scan/heap, what the collector reads for pointers), each less the same figure
// taken before the first sample (the benchmark's own series). A query
// process pays this once per GOGC's worth of allocation, so it is the
// part of every request's cost that grows with the head, not the request.
func BenchmarkHeadGCMark(b *testing.B) {
	const n, samples, cycles = 100_000, 480, 20
	for b.Loop() {
		db, series, refs := redStore(b, n)
		gc0, obj0, scan0 := gcCycle(cycles)
		for step := range int64(samples) {
			appendRound(b, db, series, refs, step)
		}
		if err := db.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		gc1, obj1, scan1 := gcCycle(cycles)
		b.ReportMetric((gc1-gc0)*1e3, "gc-cpu-ms/cycle")
		b.ReportMetric(obj1-obj0, "objects")
		b.ReportMetric((obj1-obj0)/n, "objects/series")
		b.ReportMetric((scan1-scan0)/n, "scan-B/series")
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(series)
		runtime.KeepAlive(refs)
	}
}

// gcCycle runs cycles full collections and returns the collector's CPU
// seconds per cycle, and the live heap's objects and scannable bytes (the
// part of it the collector reads for pointers) after the last.
func gcCycle(cycles int) (cpu, objects, scan float64) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/heap/objects:objects"}, {Name: "/gc/scan/heap:bytes"}}
	runtime.GC()
	metrics.Read(s)
	before := s[0].Value.Float64()
	for range cycles {
		runtime.GC()
	}
	metrics.Read(s)
	return (s[0].Value.Float64() - before) / float64(cycles), float64(s[1].Value.Uint64()), float64(s[2].Value.Uint64())
}
