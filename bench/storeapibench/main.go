// Command storeapibench times Thanos StoreAPI Series calls against one or
// more endpoints (levitated's own StoreAPI, a thanos sidecar in front of
// Prometheus) on the same data: every series matching --match over
// [--start, --end], streamed to the end, chunks counted but not decoded.
// For each endpoint it reports the samples streamed per second, the bytes
// read from the connection (the wire, gRPC framing included), and the CPU
// seconds the endpoint's processes (--pids, from /proc) spent per million
// samples. Runs alternate between the endpoints; medians are reported.
// bench/storeapi-bench.sh runs it; the results go to bench/RESULTS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/levitated/levitated/api/proto/thanos/storepb"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "storeapibench:", err)
		os.Exit(1)
	}
}

// endpoint is NAME=HOST:PORT=PID[,PID...].
type endpoint struct {
	name, addr string
	pids       []int
}

func parseEndpoint(s string) (endpoint, error) {
	parts := strings.SplitN(s, "=", 3)
	if len(parts) != 3 {
		return endpoint{}, fmt.Errorf("endpoint %q: want NAME=HOST:PORT=PID[,PID...]", s)
	}
	e := endpoint{name: parts[0], addr: parts[1]}
	for _, p := range strings.Split(parts[2], ",") {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return endpoint{}, fmt.Errorf("endpoint %q: pid %q: %w", s, p, err)
		}
		e.pids = append(e.pids, pid)
	}
	return e, nil
}

type endpoints []string

func (e *endpoints) String() string     { return strings.Join(*e, " ") }
func (e *endpoints) Set(v string) error { *e = append(*e, v); return nil }

// result is one Series call.
type result struct {
	series, chunks, samples, frames int64
	wire                            int64
	wall, cpu                       time.Duration
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("storeapibench", flag.ContinueOnError)
	var eps endpoints
	fs.Var(&eps, "endpoint", "NAME=HOST:PORT=PID[,PID...] (repeatable): a StoreAPI endpoint and the processes whose CPU it costs")
	start := fs.Int64("start", 0, "min_time, Unix milliseconds")
	end := fs.Int64("end", math.MaxInt64, "max_time, Unix milliseconds")
	match := fs.String("match", ".+", "regexp the metric name must match")
	runs := fs.Int("runs", 5, "timed calls per endpoint (after one untimed warm-up)")
	timeout := fs.Duration("timeout", 10*time.Minute, "timeout of one call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var list []endpoint
	for _, s := range eps {
		e, err := parseEndpoint(s)
		if err != nil {
			return err
		}
		list = append(list, e)
	}
	if len(list) == 0 {
		return errors.New("no --endpoint")
	}
	req := &storepb.SeriesRequest{
		MinTime:  *start,
		MaxTime:  *end,
		Matchers: []*storepb.LabelMatcher{{Type: storepb.LabelMatcher_RE, Name: "__name__", Value: *match}},
	}
	results := make([][]result, len(list))
	for r := 0; r <= *runs; r++ {
		for i := range list {
			// Alternate the order so that neither endpoint always runs
			// first after the other.
			e := list[(i+r)%len(list)]
			idx := (i + r) % len(list)
			res, err := call(e, req, *timeout)
			if err != nil {
				return fmt.Errorf("%s: %w", e.name, err)
			}
			if r > 0 {
				results[idx] = append(results[idx], res)
			}
		}
	}
	fmt.Fprintf(out, "| endpoint | series | samples | samples/s (median) | wire bytes | wire B/sample | server CPU s per M samples | wall s (median, min–max) |\n")
	fmt.Fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, e := range list {
		rs := results[i]
		walls := make([]float64, len(rs))
		cpus := make([]float64, len(rs))
		for j, r := range rs {
			walls[j] = r.wall.Seconds()
			cpus[j] = r.cpu.Seconds()
		}
		last := rs[len(rs)-1]
		wall, cpu := median(walls), median(cpus)
		fmt.Fprintf(out, "| %s | %d | %d | %.0f | %d | %.2f | %.3f | %.2f (%.2f–%.2f) |\n",
			e.name, last.series, last.samples, float64(last.samples)/wall, last.wire,
			float64(last.wire)/float64(last.samples), cpu/(float64(last.samples)/1e6), wall, minOf(walls), maxOf(walls))
	}
	return nil
}

// call runs one Series call on a new connection and drains it.
func call(e endpoint, req *storepb.SeriesRequest, timeout time.Duration) (result, error) {
	var wire atomic.Int64
	conn, err := grpc.NewClient(e.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: c, n: &wire}, nil
		}))
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cpu0, err := cpuTime(e.pids)
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	stream, err := storepb.NewStoreClient(conn).Series(ctx, req)
	if err != nil {
		return result{}, err
	}
	var r result
	var last string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return r, err
		}
		var ss []*storepb.Series
		switch x := resp.Result.(type) {
		case *storepb.SeriesResponse_Series:
			ss = []*storepb.Series{x.Series}
		case *storepb.SeriesResponse_Batch:
			ss = x.Batch.Series
		case *storepb.SeriesResponse_Warning:
			return r, fmt.Errorf("warning: %s", x.Warning)
		}
		for _, s := range ss {
			r.frames++
			key := fmt.Sprint(s.Labels)
			if key != last {
				r.series++
				last = key
			}
			for _, c := range s.Chunks {
				r.chunks++
				n, err := numSamples(c.Raw)
				if err != nil {
					return r, err
				}
				r.samples += int64(n)
			}
		}
	}
	r.wall = time.Since(t0)
	cpu1, err := cpuTime(e.pids)
	if err != nil {
		return result{}, err
	}
	r.cpu = cpu1 - cpu0
	r.wire = wire.Load()
	return r, nil
}

// numSamples reads a chunk's sample count from its header.
func numSamples(c *storepb.Chunk) (int, error) {
	var enc chunkenc.Encoding
	switch c.Type {
	case storepb.Chunk_XOR:
		enc = chunkenc.EncXOR
	case storepb.Chunk_HISTOGRAM:
		enc = chunkenc.EncHistogram
	case storepb.Chunk_FLOAT_HISTOGRAM:
		enc = chunkenc.EncFloatHistogram
	default:
		return 0, fmt.Errorf("chunk type %v", c.Type)
	}
	chk, err := chunkenc.FromData(enc, c.Data)
	if err != nil {
		return 0, err
	}
	return chk.NumSamples(), nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// cpuTime is the user+system CPU time of the processes, from /proc.
func cpuTime(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// Fields from the state (field 3): utime is field 14, stime 15.
		ut, err1 := strconv.ParseInt(fields[11], 10, 64)
		st, err2 := strconv.ParseInt(fields[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
		}
		total += time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return total, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
