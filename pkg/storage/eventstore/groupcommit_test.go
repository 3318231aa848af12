package eventstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

// slowSyncFS counts the syncs of WAL files and makes each take 2 ms, as a
// disk's fsync does.
type slowSyncFS struct {
	vfs.FS
	syncs atomic.Int64
}

type slowSyncFile struct {
	vfs.File
	fs *slowSyncFS
}

func (f *slowSyncFile) sync() {
	f.fs.syncs.Add(1)
	time.Sleep(2 * time.Millisecond)
}

func (f *slowSyncFile) Sync() error { f.sync(); return f.File.Sync() }
func (f *slowSyncFile) SyncData() error {
	f.sync()
	return f.File.SyncData()
}

func (f *slowSyncFile) SyncTo(n int64) (bool, error) { f.sync(); return f.File.SyncTo(n) }

func (fs *slowSyncFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &slowSyncFile{File: f, fs: fs}, nil
}

func (fs *slowSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *slowSyncFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *slowSyncFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, o ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, o...)
	return fs.wrap(name, f, err)
}

// TestConcurrentAppendsShareSyncs shows that concurrent appends do not
// queue behind each other's fsync: with 32 writers and a 2 ms sync, far
// fewer WAL syncs happen than commits. Appends serialized around the commit
// would need one sync each.
func TestConcurrentAppendsShareSyncs(t *testing.T) {
	fs := &slowSyncFS{FS: vfs.NewMem()}
	db := storagetest.Open(t, "db", func(o *storage.Options) { o.FS = fs })
	defer db.Close()
	c := &clock{now: t0}
	s := New(eventsNS(t, db), Options{Now: c.Now})
	before := fs.syncs.Load()
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.Append(context.Background(), 1, []events.Event{ev("deploy", events.StateStart, i, "w", fmt.Sprint(w))}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	syncs := fs.syncs.Load() - before
	t.Logf("%d commits, %d WAL syncs", writers*each, syncs)
	// Serialized appends need one sync per commit (640). Shared syncs come
	// to about 45 here, and to 100-210 under -race on two loaded cores,
	// where each append's CPU work is ten times slower than the 2 ms sync:
	// half is the bound that still fails on serialization alone.
	require.Less(t, syncs, int64(writers*each/2))
	require.Len(t, listAll(t, s, 1), writers*each)
}
