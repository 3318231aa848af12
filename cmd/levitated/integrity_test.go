package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests of this file damage copies of a data directory written by the
// real binary (killed, so that its write-ahead logs must be replayed) and
// check that `levitated check` and the next start say the same thing: one
// line naming the file, what is wrong and the remedy, or a warning with
// the counts for a torn last write-ahead log; never a stack trace.

// killedDataDir runs the binary on a new directory: samples and events,
// a flush (so that there are tables), more samples, then SIGKILL. Pebble's
// first memtables are small (256 KiB, doubling), and full ones are only
// flushed once they add up to a whole memtable, so the directory is left
// with several write-ahead logs to replay.
func killedDataDir(t *testing.T, bin string) (dir string, f *filler) {
	t.Helper()
	dir = t.TempDir()
	p := serve(t, bin, dir, nil)
	f = newFiller(p.url)
	for seq := range 10 {
		require.Equal(t, http.StatusNoContent, f.send(t, 0, seq, 50))
	}
	for i := range 5 {
		code, body := postEvent(t, p.url, fmt.Sprintf("deploy-%d", i))
		require.Equal(t, http.StatusOK, code, body)
	}
	resp, err := http.Post(p.url+"/api/v1/admin/flush", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	for seq := 10; seq < 110; seq++ {
		require.Equal(t, http.StatusNoContent, f.send(t, 0, seq, 200))
	}
	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited
	return dir, f
}

// copyDir copies the regular files of src into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(dst, 0o755))
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

// dirDigest hashes every file of dir with its name and mode.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	h := sha256.New()
	for _, e := range ents {
		fi, err := e.Info()
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		fmt.Fprintf(h, "%s %v %d\n", e.Name(), fi.Mode(), len(b))
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// runCheckBinary runs `levitated check` on dir and returns its exit code
// and output, and that it changed nothing in dir.
func runCheckBinary(t *testing.T, bin, dir string) (int, string) {
	t.Helper()
	before := dirDigest(t, dir)
	cmd := exec.Command(bin, "check", "--data-dir", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	require.Equal(t, before, dirDigest(t, dir), "levitated check changed %s", dir)
	return code, out.String()
}

// startOutcome launches the binary on dir and returns its log once it
// either exits (ready=false) or is ready (then it is stopped).
func startOutcome(t *testing.T, bin, dir string) (ready bool, logs string) {
	t.Helper()
	p := launch(t, bin, nil, "--listen-address", "127.0.0.1:0", "--data-dir", dir)
	select {
	case err := <-p.exited:
		require.Error(t, err, "an exit at start must be non-zero")
		return false, p.logs()
	case p.url = <-p.addr:
	case <-time.After(hang):
		t.Fatalf("levitated neither started nor exited:\n%s", tail(p.logs()))
	}
	waitStatus(t, p.url+"/-/ready", http.StatusOK)
	require.NoError(t, stop(t, p))
	return true, p.logs()
}

// findingLines returns the lines of check's output that start with sev.
func findingLines(out, sev string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, sev+": ") {
			lines = append(lines, strings.TrimPrefix(l, sev+": "))
		}
	}
	return lines
}

func noStack(t *testing.T, logs string) {
	t.Helper()
	require.NotContains(t, logs, "goroutine ")
	require.NotContains(t, logs, "panic")
	require.NotContains(t, logs, "stack trace")
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	b := make([]byte, 4)
	_, err = fh.ReadAt(b, off)
	require.NoError(t, err)
	for i := range b {
		b[i] ^= 0xff
	}
	_, err = fh.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
}

// wals returns the write-ahead logs of dir, oldest first.
func wals(t *testing.T, dir string) []string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	sort.Strings(logs)
	return logs
}

var truncateRE = regexp.MustCompile(`truncate -s (\d+) (\S+)\)`)

// TestCorruptDataDir damages copies of a real data directory (a MANIFEST,
// a middle write-ahead log, the last one torn, a table) and checks that
// `levitated check` and the start report each the same way: a corrupt
// file is one line naming it, what is wrong and the remedy, and exit 1
// from both; a torn last log is a warning with the counts, and the store
// starts.
func TestCorruptDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	orig, f := killedDataDir(t, bin)
	logs := wals(t, orig)
	require.GreaterOrEqual(t, len(logs), 2, "the killed store should leave several write-ahead logs")
	tables, err := filepath.Glob(filepath.Join(orig, "*.sst"))
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	manifests, err := filepath.Glob(filepath.Join(orig, "MANIFEST-*"))
	require.NoError(t, err)
	require.Len(t, manifests, 1)

	code, out := runCheckBinary(t, bin, orig)
	t.Logf("check on the undamaged copy:\n%s", out)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "0 problems, 0 warnings")

	// problem damages a copy, and checks that check and the start give
	// the same one-line problem naming the file.
	problem := func(t *testing.T, damage func(dir string) string, want string) (dir, line string) {
		dir = copyDir(t, orig)
		file := damage(dir)
		code, out := runCheckBinary(t, bin, dir)
		t.Logf("check:\n%s", out)
		require.Equal(t, 1, code, out)
		lines := findingLines(out, "PROBLEM")
		require.Len(t, lines, 1, out)
		line = lines[0]
		require.True(t, strings.HasPrefix(line, file+": "), "the problem names %s: %s", file, line)
		require.Contains(t, line, want)
		ready, logs := startOutcome(t, bin, dir)
		t.Logf("start:\n%s", logs)
		require.False(t, ready, "levitated started on a damaged store")
		require.Contains(t, logs, line, "the start says what check says")
		require.Less(t, strings.Count(logs, "\n"), 5)
		noStack(t, logs)
		return dir, line
	}

	t.Run("manifest", func(t *testing.T) {
		problem(t, func(dir string) string {
			m := filepath.Join(dir, filepath.Base(manifests[0]))
			flip(t, m, 20)
			return m
		}, "the MANIFEST is corrupt at byte")
	})

	t.Run("middle WAL", func(t *testing.T) {
		var first string
		dir, line := problem(t, func(dir string) string {
			first = filepath.Join(dir, filepath.Base(logs[0]))
			fi, err := os.Stat(first)
			require.NoError(t, err)
			flip(t, first, fi.Size()/2)
			return first
		}, "write-ahead log unreadable although a later log follows it")
		// The remedy without a backup: truncate where reading stopped.
		m := truncateRE.FindStringSubmatch(line)
		require.NotNil(t, m, line)
		require.Equal(t, first, m[2])
		n, err := strconv.ParseInt(m[1], 10, 64)
		require.NoError(t, err)
		require.NoError(t, os.Truncate(first, n))
		code, out := runCheckBinary(t, bin, dir)
		require.Equal(t, 0, code, out)
		ready, logs := startOutcome(t, bin, dir)
		require.True(t, ready, logs)
	})

	t.Run("torn last WAL", func(t *testing.T) {
		dir := copyDir(t, orig)
		last := filepath.Join(dir, filepath.Base(logs[len(logs)-1]))
		fi, err := os.Stat(last)
		require.NoError(t, err)
		require.NoError(t, os.Truncate(last, fi.Size()*2/3))
		code, out := runCheckBinary(t, bin, dir)
		t.Logf("check:\n%s", out)
		require.Equal(t, 0, code, "a torn last log does not keep the store from starting: %s", out)
		lines := findingLines(out, "WARNING")
		require.Len(t, lines, 1, out)
		require.Regexp(t, `^`+regexp.QuoteMeta(last)+`: the last write-ahead log ends in a torn record at byte \d+ of \d+: \d+ batches \(\d+ keys\) recovered from it, the \d+ bytes after the last whole batch dropped`, lines[0])
		ready, logs := startOutcome(t, bin, dir)
		t.Logf("start:\n%s", logs)
		require.True(t, ready, logs)
		what, _, _ := strings.Cut(strings.TrimPrefix(lines[0], last+": "), " (what a crash")
		require.Contains(t, logs, `level=WARN msg="`+what+`" file=`+last, "the start logs what check says")
		noStack(t, logs)
	})

	t.Run("table", func(t *testing.T) {
		dir := copyDir(t, orig)
		sst := filepath.Join(dir, filepath.Base(tables[0]))
		flip(t, sst, 40)
		code, out := runCheckBinary(t, bin, dir)
		t.Logf("check:\n%s", out)
		require.Equal(t, 1, code, out)
		lines := findingLines(out, "PROBLEM")
		require.Len(t, lines, 1, out)
		require.True(t, strings.HasPrefix(lines[0], sst+": table corrupt: "), lines[0])
		require.Contains(t, lines[0], "checksum mismatch")
		ready, logs := startOutcome(t, bin, dir)
		t.Logf("start:\n%s", logs)
		require.False(t, ready)
		require.Contains(t, logs, sst)
		require.Contains(t, logs, "checksum mismatch")
		noStack(t, logs)
	})

	// The undamaged copy still starts with everything acknowledged.
	p := serve(t, bin, copyDir(t, orig), nil)
	f.check(t, p.url)
	require.Equal(t, 1, eventCount(t, p.url, "deploy-3"))
	require.NoError(t, stop(t, p))
}
