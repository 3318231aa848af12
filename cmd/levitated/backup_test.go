package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBackupUnderLoad backs up a running levitated with `levitated
// backup` while writers send samples and events, then starts a levitated
// on the copy: it must hold every sample and event acknowledged before the
// backup started, and `levitated check` must find nothing wrong with it.
func TestBackupUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	dir := t.TempDir()
	p := serve(t, bin, dir, nil)
	f := newFiller(p.url)
	// Some of it in tables, which the backup hard-links.
	for seq := range 5 {
		require.Equal(t, http.StatusNoContent, f.send(t, 9, seq, 50))
	}
	resp, err := http.Post(p.url+"/api/v1/admin/flush", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				if code := f.send(t, w, seq, 50); code != http.StatusNoContent {
					t.Errorf("writer %d: %d %v", w, code, f.bodies)
					return
				}
			}
		})
	}
	var evMu sync.Mutex
	var events []string
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("load-%d", i)
			if code, body := postEvent(t, p.url, name); code != http.StatusOK {
				t.Errorf("event %s: %d %s", name, code, body)
				return
			}
			evMu.Lock()
			events = append(events, name)
			evMu.Unlock()
		}
	})
	// Let the load build up: some acknowledged writes of each kind.
	for {
		evMu.Lock()
		n := len(events)
		evMu.Unlock()
		if (n >= 20 && f.ackedCount() >= 60) || t.Failed() {
			break
		}
		waitStatus(t, p.url+"/-/ready", http.StatusOK)
	}

	// What was acknowledged before the backup started.
	f.mu.Lock()
	before := &filler{base: f.base, acked: map[int][]int64{}}
	for w, tss := range f.acked {
		before.acked[w] = append([]int64(nil), tss...)
	}
	f.mu.Unlock()
	evMu.Lock()
	eventsBefore := append([]string(nil), events...)
	evMu.Unlock()

	to := filepath.Join(t.TempDir(), "backup")
	out, err := exec.Command(bin, "backup", "--url", p.url, "--to", to).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, to, strings.TrimSpace(string(out)))
	afterBackup := f.ackedCount()
	cancel()
	wg.Wait()
	t.Logf("probe samples acknowledged: %d before the backup started, %d when it returned, %d in all; events before: %d",
		before.ackedCount(), afterBackup, f.ackedCount(), len(eventsBefore))
	require.Greater(t, afterBackup, before.ackedCount(), "writes went on during the backup")
	// check refuses the directory of the running server.
	report, err := exec.Command(bin, "check", "--data-dir", dir).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(report), "a running levitated holds it")
	require.NoError(t, stop(t, p))
	require.NotContains(t, p.logs(), "panic")

	// The snapshot was moved out of the data directory.
	ents, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	require.NoError(t, err)
	require.Empty(t, ents)

	code, checked := runCheckBinary(t, bin, to)
	t.Logf("check on the backup:\n%s", checked)
	require.Equal(t, 0, code, checked)
	require.Contains(t, checked, "0 problems, 0 warnings")
	require.NotContains(t, checked, " 0 tables")

	p2 := serve(t, bin, to, nil)
	before.check(t, p2.url)
	for _, name := range eventsBefore {
		require.Equal(t, 1, eventCount(t, p2.url, name), "event %s acknowledged before the backup", name)
	}
	require.NoError(t, stop(t, p2))
}
