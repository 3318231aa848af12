package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/help.txt")

// TestHelpGolden pins --help.
func TestHelpGolden(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"--help"}, &out, &errOut))
	golden := filepath.Join("testdata", "help.txt")
	if *update {
		require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), out.String(), "run go test ./cmd/levitated -run TestHelpGolden -update to accept")
	require.Empty(t, errOut.String())
}

func TestBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"--no-such-flag"}, &out, &errOut))
	require.Contains(t, errOut.String(), "flag provided but not defined: -no-such-flag")
	errOut.Reset()
	require.Equal(t, 1, run([]string{"--listen-address", "127.0.0.1:0", "--data-dir", t.TempDir(), "--query.max-samples", "-1"}, &out, &errOut))
	require.Contains(t, errOut.String(), "max samples -1 is negative")
	errOut.Reset()
	require.Equal(t, 1, run([]string{"--listen-address", "127.0.0.1:0", "--data-dir", t.TempDir(), "--query.max-depth", "-1"}, &out, &errOut))
	require.Contains(t, errOut.String(), "max query depth -1 is negative (--query.max-depth)")
	errOut.Reset()
	require.Equal(t, 1, run([]string{"--listen-address", "127.0.0.1:0", "--data-dir", t.TempDir(), "--impact.workers", "-1"}, &out, &errOut))
	require.Contains(t, errOut.String(), "workers (--impact.workers) is -1; at least 1")
}

// TestEmptyDataDir: --data-dir "" is refused naming the flag, not taken to
// mean ./data (or, for token, the working directory).
func TestEmptyDataDir(t *testing.T) {
	t.Chdir(t.TempDir())
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"--listen-address", "127.0.0.1:0", "--data-dir", ""}, &out, &errOut))
	require.Contains(t, errOut.String(), "--data-dir is empty")
	errOut.Reset()
	require.Equal(t, 2, run([]string{"token", "create", "--data-dir", "", "--scope", "read"}, &out, &errOut))
	require.Contains(t, errOut.String(), "levitated token create: --data-dir is empty")
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	require.Empty(t, entries, "nothing was created in the working directory")
}

// process is a running levitated binary.
type process struct {
	cmd    *exec.Cmd
	url    string
	ready  time.Duration // from exec to the first 200 of /-/ready
	stderr *bytes.Buffer
	exited chan error
}

var addrRE = regexp.MustCompile(`address=(127\.0\.0\.1:\d+)`)

// start execs bin on dir, with extra flags, and waits for /-/ready.
func start(t *testing.T, bin, dir string, extra ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen-address", "127.0.0.1:0", "--data-dir", dir}, extra...)...)
	pr, pw := io.Pipe()
	p := &process{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	cmd.Stderr = pw
	began := time.Now()
	require.NoError(t, cmd.Start())
	scanned := make(chan struct{})
	go func() {
		// Exited once stderr is read to its end, so that the last lines
		// the process wrote are in p.stderr.
		err := cmd.Wait()
		pw.Close()
		<-scanned
		p.exited <- err
	}()
	addr := make(chan string, 1)
	var mu sync.Mutex
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr) // a line too long for the scanner must not block the process
	}()
	select {
	case a := <-addr:
		p.url = "http://" + a
	case err := <-p.exited:
		t.Fatalf("levitated exited before listening: %v\n%s", err, p.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("levitated did not start:\n%s", p.stderr)
	}
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		require.Less(t, time.Since(began), time.Minute, "levitated not ready")
		time.Sleep(5 * time.Millisecond)
	}
	p.ready = time.Since(began)
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// ack is one acknowledged sample.
type ack struct {
	ts int64
	v  float64
}

// TestKill9 runs concurrent writers against the real binary, kills it with
// SIGKILL at a random moment, restarts it on the same directory and reads
// back every sample whose request got a 2xx, exactly.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "requests.log"))
	require.NoError(t, err)
	defer logFile.Close()

	p := start(t, bin, dir)
	t.Logf("cold start to ready: %v", p.ready)

	const writers = 4
	base := time.Now().Add(-5 * time.Minute).Truncate(time.Second).UnixMilli()
	var (
		mu    sync.Mutex
		acked = map[int][]ack{}
		sent  int
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				var samples []prompb.Sample
				for k := range 10 {
					ts := base + int64(seq*10+k)
					samples = append(samples, prompb.Sample{Timestamp: ts, Value: float64(ts-base) + 0.25})
				}
				b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
					Labels:  []prompb.Label{{Name: "__name__", Value: "crash"}, {Name: "writer", Value: strconv.Itoa(w)}},
					Samples: samples,
				}}})
				if err != nil {
					panic(err)
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				resp, err := client.Do(req)
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				sent++
				fmt.Fprintf(logFile, "writer=%d seq=%d code=%d err=%v\n", w, seq, code, err)
				if code/100 == 2 {
					for _, s := range samples {
						acked[w] = append(acked[w], ack{s.Timestamp, s.Value})
					}
				}
				mu.Unlock()
				if err != nil {
					return // the server is gone
				}
			}
		})
	}

	time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.exited
	wg.Wait()
	cancel()

	mu.Lock()
	total := 0
	for _, a := range acked {
		total += len(a)
	}
	t.Logf("requests sent: %d, samples acknowledged before kill -9: %d", sent, total)
	mu.Unlock()
	require.Positive(t, total, "no write was acknowledged before the kill")

	p2 := start(t, bin, dir)
	t.Logf("time to ready after kill -9: %v", p2.ready)

	for w := range writers {
		got := rawSamples(t, p2.url, fmt.Sprintf(`crash{writer="%d"}`, w), base)
		for _, a := range acked[w] {
			v, ok := got[a.ts]
			require.True(t, ok, "writer %d: acknowledged sample at %d lost", w, a.ts)
			require.Equal(t, a.v, v, "writer %d: sample at %d", w, a.ts)
		}
		// Nothing was invented: every stored sample is one that was sent.
		for ts, v := range got {
			require.Equal(t, float64(ts-base)+0.25, v)
		}
	}

	// A clean stop after the crash recovery.
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-p2.exited, p2.stderr.String())
}

// rawSamples reads every raw sample of selector from base on.
func rawSamples(t *testing.T, u, selector string, base int64) map[int64]float64 {
	t.Helper()
	at := time.UnixMilli(base).Add(10 * time.Minute)
	resp, err := http.Get(u + "/api/v1/query?" + url.Values{
		"query": {selector + "[11m]"}, "time": {strconv.FormatInt(at.Unix(), 10)},
	}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Values [][2]json.RawMessage `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	out := map[int64]float64{}
	for _, r := range body.Data.Result {
		for _, pair := range r.Values {
			var sec float64
			var val string
			require.NoError(t, json.Unmarshal(pair[0], &sec))
			require.NoError(t, json.Unmarshal(pair[1], &val))
			v, err := strconv.ParseFloat(val, 64)
			require.NoError(t, err)
			out[int64(sec*1000+0.5)] = v
		}
	}
	return out
}

// TestSIGTERMRestart stops the binary with SIGTERM, checks it shuts down
// cleanly with exit code 0, and that a restart sees the data.
func TestSIGTERMRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	dir := t.TempDir()
	p := start(t, bin, dir)
	ts := time.Now().Add(-time.Minute).UnixMilli()
	b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "before_term"}},
		Samples: []prompb.Sample{{Timestamp: ts, Value: 3.5}},
	}}})
	require.NoError(t, err)
	resp, err := http.Post(p.url+"/api/v1/write", "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, b)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-p.exited, p.stderr.String())
	require.Contains(t, p.stderr.String(), "shut down")

	p2 := start(t, bin, dir)
	got := rawSamples(t, p2.url, "before_term", ts-time.Minute.Milliseconds())
	require.Equal(t, map[int64]float64{ts: 3.5}, got)
}
