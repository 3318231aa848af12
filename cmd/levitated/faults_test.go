package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// The tests of this file run the real binary on a real filesystem that
// misbehaves: a tmpfs that fills up, a directory whose permission is taken
// away. Mounting needs root; they skip without it.

// hang is how long a step may take before the test calls it a hang. It
// detects hangs; it does not measure anything.
const hang = 60 * time.Second

var (
	levitatedBinOnce sync.Once
	levitatedBin     string
	levitatedBinErr  error
)

// levitatedBinary builds levitated once for all the tests of the package
// (linking it takes a while on a loaded machine).
func levitatedBinary(t *testing.T) string {
	t.Helper()
	levitatedBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "levitated-faults")
		if err != nil {
			levitatedBinErr = err
			return
		}
		levitatedBin = filepath.Join(dir, "levitated")
		out, err := exec.Command("go", "build", "-o", levitatedBin, ".").CombinedOutput()
		if err != nil {
			levitatedBinErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, levitatedBinErr)
	return levitatedBin
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and returns
// it; it is unmounted at cleanup.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// proc is a levitated binary started by launch.
type proc struct {
	cmd    *exec.Cmd
	url    string
	addr   chan string
	exited chan error

	logMu  sync.Mutex
	stderr bytes.Buffer
}

// launch execs bin with args and collects its stderr; it does not wait for
// anything.
func launch(t *testing.T, bin string, cred *syscall.Credential, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	pr, pw := io.Pipe()
	p := &proc{cmd: cmd, exited: make(chan error, 1), addr: make(chan string, 1)}
	cmd.Stderr = pw
	require.NoError(t, cmd.Start())
	logged := make(chan struct{})
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-logged
		p.exited <- err
	}()
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.logMu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.logMu.Unlock()
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case p.addr <- "http://" + m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

func (p *proc) logs() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.stderr.String()
}

// serve launches bin on dir and waits until it answers /-/ready with 200.
func serve(t *testing.T, bin, dir string, cred *syscall.Credential, args ...string) *proc {
	t.Helper()
	p := launch(t, bin, cred, append([]string{"--listen-address", "127.0.0.1:0", "--data-dir", dir}, args...)...)
	select {
	case p.url = <-p.addr:
	case err := <-p.exited:
		t.Fatalf("levitated exited before listening: %v\n%s", err, p.logs())
	case <-time.After(hang):
		t.Fatalf("levitated did not start:\n%s", p.logs())
	}
	waitStatus(t, p.url+"/-/ready", http.StatusOK)
	return p
}

// waitStatus polls u until it answers code.
func waitStatus(t *testing.T, u string, code int) string {
	t.Helper()
	deadline := time.Now().Add(hang)
	for {
		resp, err := http.Get(u)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == code {
				return string(body)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d (last: %v)", u, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit error; a process that does not
// exit is a hang.
func stop(t *testing.T, p *proc) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.exited:
		return err
	case <-time.After(hang):
		t.Fatalf("levitated did not exit after SIGTERM:\n%s", tail(p.logs()))
		return nil
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// filler sends remote write requests of a probe sample (series
// probe{writer=w}, one sample per request at base+seq) and n series of
// random labels that only take space, and records the probes
// acknowledged.
type filler struct {
	url  string
	base int64

	mu     sync.Mutex
	acked  map[int][]int64 // writer → probe timestamps acknowledged
	codes  map[int]int
	bodies map[int]string
}

func newFiller(u string) *filler {
	return &filler{url: u, base: time.Now().Add(-5 * time.Minute).UnixMilli(), acked: map[int][]int64{}, codes: map[int]int{}, bodies: map[int]string{}}
}

var fillClient = &http.Client{Timeout: hang}

// samplesPerSeries is how many samples each filler series gets per
// request.
const samplesPerSeries = 20

// send sends one request (sequence number seq of writer w) and returns its
// status. The filler series are the same n series in every request of a
// writer, each with samplesPerSeries new samples of noise: that takes disk
// space in the write-ahead log at the rate a busy Prometheus would.
func (f *filler) send(t *testing.T, w, seq, n int) int {
	ts := f.base + int64(seq*samplesPerSeries)
	series := []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "probe"}, {Name: "writer", Value: strconv.Itoa(w)}},
		Samples: []prompb.Sample{{Timestamp: ts, Value: float64(seq)}},
	}}
	x := uint64(ts)*0x9E3779B97F4A7C15 + uint64(w)
	for i := range n {
		samples := make([]prompb.Sample, samplesPerSeries)
		for j := range samples {
			// A counter going up by 0..15: 8 bytes a sample in the
			// write-ahead log, about one in a checkpointed chunk.
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			samples[j] = prompb.Sample{Timestamp: ts + int64(j), Value: float64(seq*samplesPerSeries*8+j*8) + float64(x&15)}
		}
		series = append(series, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "filler"}, {Name: "id", Value: fmt.Sprintf("%d-%d", w, i)}},
			Samples: samples,
		})
	}
	b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: series})
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodPost, f.url+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := fillClient.Do(req)
	require.NoError(t, err, "remote write (a timeout here is a hang)")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.codes[resp.StatusCode]++
	if resp.StatusCode/100 == 2 {
		f.acked[w] = append(f.acked[w], ts)
	} else {
		f.bodies[resp.StatusCode] = string(body) + " Retry-After=" + resp.Header.Get("Retry-After")
	}
	return resp.StatusCode
}

// fillUntil runs writers until one of them gets a non-2xx answer and
// returns that status.
func (f *filler) fillUntil(t *testing.T, writers, seriesPerRequest int) int {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refused := make(chan int, writers)
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				if code := f.send(t, w, seq, seriesPerRequest); code/100 != 2 {
					refused <- code
					return
				}
			}
		})
	}
	code := <-refused
	cancel()
	wg.Wait()
	return code
}

func (f *filler) ackedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.acked {
		n += len(a)
	}
	return n
}

// check reads every acknowledged probe back from u.
func (f *filler) check(t *testing.T, u string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for w, tss := range f.acked {
		got := rawSamples(t, u, fmt.Sprintf(`probe{writer="%d"}`, w), f.base)
		for _, ts := range tss {
			_, ok := got[ts]
			require.True(t, ok, "writer %d: acknowledged sample at %d lost (%d of %d back)", w, ts, len(got), len(tss))
		}
	}
}

// postEvent posts one event and returns the status and body, with the
// Retry-After of a refusal appended.
func postEvent(t *testing.T, u, name string) (int, string) {
	t.Helper()
	resp, err := fillClient.Post(u+"/api/v1/events", "application/json", strings.NewReader(`{"name":"`+name+`","state":"start","attributes":{"service":"api"}}`))
	require.NoError(t, err, "post event (a timeout here is a hang)")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		return resp.StatusCode, string(body) + " Retry-After=" + ra
	}
	return resp.StatusCode, string(body)
}

// postOTLP sends one OTLP gauge sample and returns the status and the
// body, with the Retry-After of a refusal appended.
func postOTLP(t *testing.T, u string) (int, string) {
	t.Helper()
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("otlp.probe")
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	dp.SetDoubleValue(1)
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	require.NoError(t, err)
	resp, err := fillClient.Post(u+"/api/v1/otlp/v1/metrics", "application/x-protobuf", bytes.NewReader(b))
	require.NoError(t, err, "OTLP write (a timeout here is a hang)")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		return resp.StatusCode, string(body) + " Retry-After=" + ra
	}
	return resp.StatusCode, string(body)
}

// eventCount counts the events named name.
func eventCount(t *testing.T, u, name string) int {
	t.Helper()
	resp, err := http.Get(u + "/api/v1/events?" + url.Values{"name": {name}, "limit": {"1000"}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body struct {
		Events []json.RawMessage `json:"events"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return len(body.Events)
}

// TestDiskFullWhileRunning fills the data directory's filesystem (a 24 MB
// tmpfs) through remote write, and checks that writes and events then get
// 503 naming the cause, /-/ready turns 503, freeing space brings both back
// without a restart, SIGTERM ends the process, and a restart holds every
// acknowledged sample and event.
func TestDiskFullWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	mnt := mountTmpfs(t, "24m")
	bin := levitatedBinary(t)
	// Ballast, deleted to free space.
	ballast := filepath.Join(mnt, "ballast")
	require.NoError(t, os.WriteFile(ballast, make([]byte, 6<<20), 0o644))
	dir := filepath.Join(mnt, "data")

	p := serve(t, bin, dir, nil)
	f := newFiller(p.url)
	events := 0
	code, body := postEvent(t, p.url, "before-full")
	require.Equal(t, http.StatusOK, code, body)
	events++

	began := time.Now()
	code = f.fillUntil(t, 4, 200)
	t.Logf("filled in %v", time.Since(began))
	t.Logf("acknowledged %d probe samples before the disk filled; answers %v", f.ackedCount(), f.codes)
	require.Equal(t, http.StatusServiceUnavailable, code, f.bodies)
	require.Contains(t, f.bodies[code], "no space left on device")
	require.Contains(t, f.bodies[code], "Retry-After=10")
	require.Positive(t, f.ackedCount())

	// While full: every write is refused at once, readiness says why,
	// reads still work.
	require.Equal(t, http.StatusServiceUnavailable, f.send(t, 0, 5000, 1))
	code, body = postEvent(t, p.url, "while-full")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "no space left on device")
	require.Contains(t, body, "Retry-After=10")
	// OTLP, stored by Prometheus' receiver, answers the store's refusal as
	// remote write 1.0 does, not with the receiver's 500.
	code, body = postOTLP(t, p.url)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "no space left on device")
	require.Contains(t, body, "Retry-After=10")
	ready := waitStatus(t, p.url+"/-/ready", http.StatusServiceUnavailable)
	require.Contains(t, ready, "no space left on device")
	require.Contains(t, ready, "free space on the filesystem of")
	f.check(t, p.url)

	// Space freed: the store takes writes again without a restart.
	require.NoError(t, os.Remove(ballast))
	began = time.Now()
	waitStatus(t, p.url+"/-/ready", http.StatusOK)
	t.Logf("ready again %v after the space was freed", time.Since(began))
	require.Equal(t, http.StatusNoContent, f.send(t, 0, 5000, 1))
	code, body = postEvent(t, p.url, "before-full")
	require.Equal(t, http.StatusOK, code, body)
	events++

	require.NoError(t, stop(t, p), tail(p.logs()))
	logs := p.logs()
	require.NotContains(t, logs, "panic")
	require.Contains(t, logs, "storage cannot write; refusing writes until it can")
	require.Contains(t, logs, "storage can write again")

	began = time.Now()
	p2 := serve(t, bin, dir, nil)
	t.Logf("restarted in %v", time.Since(began))
	f.check(t, p2.url)
	require.Equal(t, events, eventCount(t, p2.url, "before-full"))
	require.NoError(t, stop(t, p2))
}

// TestDiskFullThenSIGTERM fills the disk and stops the process while it is
// still full: it must exit (non-zero, saying why), and after the
// filesystem is grown, a restart holds every acknowledged sample.
func TestDiskFullThenSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	mnt := mountTmpfs(t, "24m")
	bin := levitatedBinary(t)
	dir := filepath.Join(mnt, "data")
	p := serve(t, bin, dir, nil)
	f := newFiller(p.url)
	require.Equal(t, http.StatusServiceUnavailable, f.fillUntil(t, 4, 200), f.bodies)

	err := stop(t, p)
	require.Error(t, err, "a store that could not close cleanly exits non-zero")
	logs := p.logs()
	require.NotContains(t, logs, "panic")
	require.Contains(t, logs, "close storage without a final checkpoint")

	// Starting on the still-full disk refuses clearly.
	p2 := launch(t, bin, nil, "--listen-address", "127.0.0.1:0", "--data-dir", dir)
	select {
	case err := <-p2.exited:
		require.Error(t, err)
		logs := p2.logs()
		require.Contains(t, logs, "no space left on device", logs)
		require.NotContains(t, logs, "goroutine ")
		t.Logf("start on a full disk: %s", strings.TrimSpace(logs))
	case <-time.After(hang):
		t.Fatalf("levitated on a full disk neither started nor exited:\n%s", tail(p2.logs()))
	}

	out, rerr := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput()
	require.NoError(t, rerr, string(out))
	p3 := serve(t, bin, dir, nil)
	f.check(t, p3.url)
	require.NoError(t, stop(t, p3))
}

// nobody runs the binary as uid/gid 65534 (a non-root user, for whom
// permissions apply).
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// nobodyDir returns a directory that nobody can reach, with the binary
// copied into it and a data directory owned by nobody.
func nobodyDir(t *testing.T) (bin, data string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	root, err := os.MkdirTemp("", "levitated-perm")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	require.NoError(t, os.Chmod(root, 0o755))
	bin = filepath.Join(root, "levitated")
	b, err := os.ReadFile(levitatedBinary(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, b, 0o755))
	data = filepath.Join(root, "data")
	require.NoError(t, os.Mkdir(data, 0o755))
	require.NoError(t, os.Chown(data, 65534, 65534))
	return bin, data
}

// TestPermissionLostWhileRunning takes the write permission of the data
// directory away from a running levitated (not root, so it applies) and
// checks that the store refuses writes with 503 naming the cause instead
// of panicking, /-/ready says so, giving the permission back brings writes
// back, and every acknowledged sample is there after a restart.
func TestPermissionLostWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, dir := nobodyDir(t)
	p := serve(t, bin, dir, nobody)
	f := newFiller(p.url)
	for seq := range 20 {
		require.Equal(t, http.StatusNoContent, f.send(t, 0, seq, 50))
	}

	require.NoError(t, os.Chmod(dir, 0o555))
	// A flush needs new files (a write-ahead log, tables).
	resp, err := fillClient.Post(p.url+"/api/v1/admin/flush", "", nil)
	require.NoError(t, err, "flush (a timeout here is a hang)")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Contains(t, string(body), "permission denied")

	require.Equal(t, http.StatusServiceUnavailable, f.send(t, 0, 100, 1))
	require.Contains(t, f.bodies[http.StatusServiceUnavailable], "permission denied")
	ready := waitStatus(t, p.url+"/-/ready", http.StatusServiceUnavailable)
	require.Contains(t, ready, "make "+dir+" writable by uid 65534")

	require.NoError(t, os.Chmod(dir, 0o755))
	waitStatus(t, p.url+"/-/ready", http.StatusOK)
	require.Equal(t, http.StatusNoContent, f.send(t, 0, 101, 1))
	require.NoError(t, stop(t, p), tail(p.logs()))
	require.NotContains(t, p.logs(), "panic")

	p2 := serve(t, bin, dir, nobody)
	f.check(t, p2.url)
	require.NoError(t, stop(t, p2))
}

// TestStartOnUnwritableDir starts levitated, as a non-root user, on a data
// directory with a write-ahead log to replay that it may not write to: it
// must exit non-zero with one line naming the directory and the remedy,
// without a flood of log lines.
func TestStartOnUnwritableDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin, dir := nobodyDir(t)
	p := serve(t, bin, dir, nobody)
	f := newFiller(p.url)
	for seq := range 20 {
		require.Equal(t, http.StatusNoContent, f.send(t, 0, seq, 50))
	}
	// Killed, so the write-ahead log must be replayed.
	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited

	require.NoError(t, os.Chmod(dir, 0o555))
	p2 := launch(t, bin, nobody, "--listen-address", "127.0.0.1:0", "--data-dir", dir)
	select {
	case err := <-p2.exited:
		require.Error(t, err)
	case <-time.After(hang):
		t.Fatalf("levitated on an unwritable directory neither started nor exited:\n%s", tail(p2.logs()))
	}
	logs := p2.logs()
	t.Logf("start on an unwritable directory:\n%s", logs)
	require.Contains(t, logs, "permission denied")
	require.Contains(t, logs, "writable by uid 65534, then start levitated again")
	require.NotContains(t, logs, "goroutine ")
	require.Less(t, strings.Count(logs, "\n"), 10, "a flood of log lines")

	require.NoError(t, os.Chmod(dir, 0o755))
	p3 := serve(t, bin, dir, nobody)
	f.check(t, p3.url)
	require.NoError(t, stop(t, p3))
}

// TestCorruptTable flips bytes in a table (.sst) of a stopped levitated's
// data directory: the next start must exit non-zero with one line naming
// the file and the remedy, not a stack trace.
func TestCorruptTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	dir := t.TempDir()
	p := serve(t, bin, dir, nil)
	f := newFiller(p.url)
	for seq := range 5 {
		require.Equal(t, http.StatusNoContent, f.send(t, 0, seq, 50))
	}
	resp, err := http.Post(p.url+"/api/v1/admin/flush", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NoError(t, stop(t, p))

	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	fh, err := os.OpenFile(tables[0], os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = fh.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, 40)
	require.NoError(t, err)
	require.NoError(t, fh.Close())

	p2 := launch(t, bin, nil, "--listen-address", "127.0.0.1:0", "--data-dir", dir)
	select {
	case err := <-p2.exited:
		require.Error(t, err)
	case <-time.After(hang):
		t.Fatalf("levitated on a corrupt table neither started nor exited:\n%s", tail(p2.logs()))
	}
	logs := p2.logs()
	t.Logf("start on a corrupt table:\n%s", logs)
	require.Contains(t, logs, filepath.Base(tables[0]))
	require.Contains(t, logs, "checksum mismatch")
	require.Contains(t, logs, "restore "+dir+" from a backup")
	require.NotContains(t, logs, "goroutine ")
	require.NotContains(t, logs, "stack trace")
	require.NotContains(t, logs, "panic")
}
