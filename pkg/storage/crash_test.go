package storage_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
)

// crashBatch is one appender's worth of samples: the same timestamp in
// several series, so that a batch that is half present shows.
type crashBatch struct {
	id     int
	t      int64
	series []int
	values []float64
}

type crashLog struct {
	mu       sync.Mutex
	attempts map[int64]*crashBatch // by timestamp
	acked    map[int]bool
}

// TestCrashRecovery writes from concurrent appenders, checkpoints at random,
// and takes crash images of Pebble's crashable in-memory filesystem at
// random moments (keeping a random part of the unsynced data). Each image
// is opened: every batch acknowledged before the image must be there with
// its exact values, and no batch may be half there. Writing then continues
// on the recovered store, for the next cycle.
func TestCrashRecovery(t *testing.T) {
	cycles := 100
	if testing.Short() {
		cycles = 20
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("LEVITATED_CRASH_SEED"); v != "" { // rerun a failed run
		var err error
		seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d (LEVITATED_CRASH_SEED reruns it)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	const nSeries = 16
	series := make([]labels.Labels, nSeries)
	for i := range series {
		series[i] = labels.FromStrings("__name__", "crash", "i", fmt.Sprint(i))
	}
	log := &crashLog{attempts: map[int64]*crashBatch{}, acked: map[int]bool{}}
	fs := vfs.NewCrashableMem()
	opts := storage.Options{Logger: quietLogger(), FS: fs, CheckpointInterval: time.Hour, SamplesPerChunk: 8} // chunks close within a cycle, so spills write some
	db, err := storage.Open("/db", opts)
	require.NoError(t, err)
	nextID := 0
	var idMu sync.Mutex
	newBatch := func(r *rand.Rand) *crashBatch {
		idMu.Lock()
		nextID++
		id := nextID
		idMu.Unlock()
		b := &crashBatch{id: id, t: int64(id) * 1000}
		for _, i := range r.Perm(nSeries)[:1+r.IntN(4)] {
			b.series = append(b.series, i)
			b.values = append(b.values, float64(id)+float64(i)/100+r.Float64()/1e6)
		}
		return b
	}

	for cycle := 0; cycle < cycles; cycle++ {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			r := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					b := newBatch(r)
					log.mu.Lock()
					log.attempts[b.t] = b
					log.mu.Unlock()
					app := db.AppenderV2(context.Background())
					var aerr error
					for k, i := range b.series {
						if _, aerr = app.Append(0, series[i], 0, b.t, b.values[k], nil, nil, promstorage.AOptions{}); aerr != nil {
							break
						}
					}
					if aerr != nil {
						_ = app.Rollback()
						continue
					}
					if app.Commit() == nil {
						log.mu.Lock()
						log.acked[b.id] = true
						log.mu.Unlock()
					}
				}
			}()
		}
		wg.Add(1)
		cr := rand.New(rand.NewPCG(rng.Uint64(), 99))
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				time.Sleep(time.Duration(1+cr.IntN(5)) * time.Millisecond)
				if cr.IntN(2) == 0 {
					// Closed chunks written and dropped between
					// checkpoints, their records kept.
					_ = storage.SpillForTest(db)
				} else {
					_ = storage.CheckpointForTest(db)
				}
			}
		}()
		time.Sleep(time.Duration(2+rng.IntN(15)) * time.Millisecond)
		log.mu.Lock()
		ackedBefore := make(map[int]bool, len(log.acked))
		for id := range log.acked {
			ackedBefore[id] = true
		}
		log.mu.Unlock()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(rng.Uint64(), 1))})
		cancel()
		wg.Wait()
		_ = db.Close()

		fs = crashed
		opts.FS = fs
		db, err = storage.Open("/db", opts)
		require.NoError(t, err, "cycle %d: reopen after crash", cycle)
		verifyCrashImage(t, cycle, db, log, ackedBefore, nSeries)
	}
	require.NoError(t, db.Close())
}

func verifyCrashImage(t *testing.T, cycle int, db *storage.DB, log *crashLog, ackedBefore map[int]bool, nSeries int) {
	t.Helper()
	got := readAll(t, context.Background(), db, math.MinInt64, math.MaxInt64, metric("crash"))
	present := map[int64]map[int]float64{}
	for ls, pts := range got {
		var i int
		_, err := fmt.Sscanf(ls, `{__name__="crash", i="%d"}`, &i)
		require.NoError(t, err)
		for _, p := range pts {
			if present[p.t] == nil {
				present[p.t] = map[int]float64{}
			}
			present[p.t][i] = p.v
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	// Whole or absent.
	for ts, vals := range present {
		b := log.attempts[ts]
		require.NotNil(t, b, "cycle %d: sample at %d was never written", cycle, ts)
		require.Len(t, vals, len(b.series), "cycle %d: batch %d is half present", cycle, b.id)
		for k, i := range b.series {
			require.Equal(t, math.Float64bits(b.values[k]), math.Float64bits(vals[i]), "cycle %d: batch %d series %d", cycle, b.id, i)
		}
		// What survived counts as acknowledged from now on: later images
		// must keep it (it is durable on the recovered store).
		log.acked[b.id] = true
	}
	for _, b := range log.attempts {
		if _, ok := present[b.t]; ackedBefore[b.id] && !ok {
			t.Fatalf("cycle %d: acknowledged batch %d lost", cycle, b.id)
		}
	}
	// Batches that did not survive are forgotten: their timestamps may not
	// reappear.
	for ts, b := range log.attempts {
		if _, ok := present[ts]; !ok {
			delete(log.attempts, ts)
			delete(log.acked, b.id)
		}
	}
}

// TestCrashDuringSpillOfUnwrittenCommit: a commit applies its samples to
// memory before its write-ahead record is in Pebble. A spill that meets
// them — here the closed chunk of series a, holding the commit's sample —
// must not reach Pebble before that record: a later commit's sync would
// make the chunk durable while the record is not, and a crash would leave
// the batch half present (a's sample without b's).
func TestCrashDuringSpillOfUnwrittenCommit(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewCrashableMem()
	opts := storage.Options{Logger: quietLogger(), FS: fs, CheckpointInterval: time.Hour, SamplesPerChunk: 8}
	db, err := storage.Open("/db", opts)
	require.NoError(t, err)
	a := labels.FromStrings("__name__", "m", "s", "a")
	b := labels.FromStrings("__name__", "m", "s", "b")
	c := labels.FromStrings("__name__", "m", "s", "c")
	for ts := int64(1); ts <= 7; ts++ {
		appendFloats(t, ctx, db, a, point{t: ts, v: 1})
	}

	// The batch {a@8, b@8} stops between memory and its record.
	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	storage.SetBeforeWALForTest(db, func() {
		if first.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
	})
	committed := make(chan error, 1)
	go func() {
		app := db.AppenderV2(ctx)
		for _, ls := range []labels.Labels{a, b} {
			if _, err := app.Append(0, ls, 0, 8, 2, nil, nil, promstorage.AOptions{}); err != nil {
				committed <- err
				return
			}
		}
		committed <- app.Commit()
	}()
	<-held
	appendFloats(t, ctx, db, a, point{t: 9, v: 3}) // closes a's chunk 1..8

	spilled := make(chan error, 1)
	go func() { spilled <- storage.SpillForTest(db) }()
	select {
	case err := <-spilled: // without the wait: a's chunk, with a@8, is in Pebble
		require.NoError(t, err)
		spilled <- nil
	case <-time.After(200 * time.Millisecond): // the spill waits for the record
	}
	appendFloats(t, ctx, db, c, point{t: 1, v: 4}) // a synced commit
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	close(release)
	require.NoError(t, <-committed)
	require.NoError(t, <-spilled)
	require.NoError(t, db.Close())

	opts.FS = crashed
	db, err = storage.Open("/db", opts)
	require.NoError(t, err)
	defer db.Close()
	got := readAll(t, ctx, db, math.MinInt64, math.MaxInt64, metric("m"))
	at8 := 0
	for _, ls := range []labels.Labels{a, b} {
		for _, p := range got[ls.String()] {
			if p.t == 8 {
				at8++
			}
		}
	}
	require.NotEqual(t, 1, at8, "the batch {a@8, b@8} is half present: %v", got)
	require.Len(t, got[a.String()], 8+at8/2, "a's acknowledged samples 1..7 and 9, and 8 if the batch is there: %v", got)
	require.Len(t, got[c.String()], 1)
}
