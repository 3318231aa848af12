package compat

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// The peers' clients pin their own versions of Prometheus' client library
// (Argo Rollouts' provider does not compile against the one levitated
// uses), so this module does not import levitated: it builds the levitated
// binary from the main module in ../ and talks to it over loopback, as the
// peers do in production.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "levitated-compat")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "levitated")
	build := exec.Command("go", "build", "-o", binary, "./cmd/levitated")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build levitated: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var addrRE = regexp.MustCompile(`address=(127\.0\.0\.1:\d+)`)

// start runs levitated on 127.0.0.1:0 with a fresh data directory and
// returns its URL once /-/ready answers; it is stopped with SIGTERM (and
// must exit 0) at cleanup.
func start(t *testing.T) string {
	t.Helper()
	u, _ := startProcess(t)
	return u
}

// startProcess is start with more flags; it also returns the process.
func startProcess(t *testing.T, args ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--listen-address", "127.0.0.1:0", "--data-dir", t.TempDir()}, args...)...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	scanned := make(chan struct{})
	go func() {
		// Exited once stderr is read to its end, so that the last lines
		// the process wrote are in logs (as cmd/levitated's tests do).
		err := cmd.Wait()
		pw.Close()
		<-scanned
		exited <- err
	}()
	var mu sync.Mutex
	var logs bytes.Buffer
	addr := make(chan string, 1)
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
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
	var u string
	select {
	case a := <-addr:
		u = "http://" + a
	case err := <-exited:
		t.Fatalf("levitated exited: %v\n%s", err, logs.String())
	case <-time.After(time.Minute):
		t.Fatal("levitated did not start")
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err := <-exited
		mu.Lock()
		defer mu.Unlock()
		require.NoError(t, err, logs.String())
	})
	for range 1000 {
		resp, err := http.Get(u + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u, cmd
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("levitated not ready")
	return "", nil
}

// Remote write 1.0, encoded by hand (prompb.WriteRequest field numbers) so
// that this module needs no Prometheus packages.
func appendLabel(b []byte, field protowire.Number, name, value string) []byte {
	var l []byte
	l = protowire.AppendTag(l, 1, protowire.BytesType)
	l = protowire.AppendString(l, name)
	l = protowire.AppendTag(l, 2, protowire.BytesType)
	l = protowire.AppendString(l, value)
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, l)
}

func appendSample(b []byte, field protowire.Number, value float64, ts int64) []byte {
	var s []byte
	s = protowire.AppendTag(s, 1, protowire.Fixed64Type)
	s = protowire.AppendFixed64(s, math.Float64bits(value))
	s = protowire.AppendTag(s, 2, protowire.VarintType)
	s = protowire.AppendVarint(s, uint64(ts))
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

// requestSeries encodes one prometheus.TimeSeries: labels (sorted), one
// sample and one exemplar carrying trace_id.
func requestSeries(labels [][2]string, value float64, ts int64, traceID string) []byte {
	var s []byte
	for _, l := range labels {
		s = appendLabel(s, 1, l[0], l[1])
	}
	s = appendSample(s, 2, value, ts)
	var ex []byte
	ex = appendLabel(ex, 1, "trace_id", traceID)
	ex = protowire.AppendTag(ex, 2, protowire.Fixed64Type)
	ex = protowire.AppendFixed64(ex, math.Float64bits(value))
	ex = protowire.AppendTag(ex, 3, protowire.VarintType)
	ex = protowire.AppendVarint(ex, uint64(ts))
	s = protowire.AppendTag(s, 3, protowire.BytesType)
	s = protowire.AppendBytes(s, ex)
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	return protowire.AppendBytes(req, s)
}

// counterMetadata encodes one prometheus.MetricMetadata of type counter.
func counterMetadata(family, help string) []byte {
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.VarintType)
	m = protowire.AppendVarint(m, 1) // COUNTER
	m = protowire.AppendTag(m, 2, protowire.BytesType)
	m = protowire.AppendString(m, family)
	m = protowire.AppendTag(m, 4, protowire.BytesType)
	m = protowire.AppendString(m, help)
	var req []byte
	req = protowire.AppendTag(req, 3, protowire.BytesType)
	return protowire.AppendBytes(req, m)
}

// startWithRollout starts levitated and writes a canary's request counters
// (990 ok, 10 errors) 30 s ago, so that instant queries at "now" see them.
func startWithRollout(t *testing.T) (string, time.Time) {
	t.Helper()
	u := start(t)
	ts := time.Now().Add(-30 * time.Second).Truncate(time.Second)
	series := func(code string, v float64) []byte {
		return requestSeries([][2]string{
			{"__name__", "http_requests_total"}, {"code", code}, {"job", "checkout"}, {"version", "canary"},
		}, v, ts.UnixMilli(), "t-"+code)
	}
	var body []byte
	body = append(body, series("200", 990)...)
	body = append(body, series("500", 10)...)
	body = append(body, counterMetadata("http_requests_total", "Requests.")...)
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, string(b))
	return u, ts
}

const successRate = `sum(http_requests_total{job="checkout",code!~"5.."}) / sum(http_requests_total{job="checkout"})`
