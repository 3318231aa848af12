// Command smallq times queries of a peer-bench queries file (instant,
// range, series and labels) back to back against one server, as
// peer-bench's query pass sends them (POST forms, gzip accepted, a kept-alive
// connection), and reports per query the p50, p90 and mean milliseconds,
// the server's CPU milliseconds per query (from /proc/PID/stat, with -pid),
// the response's size and a digest of its body (equal digests: equal
// answers). bench/smallq.sh runs it against builds in turn; the figures go
// to bench/RESULTS.md.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "smallq:", err)
		os.Exit(1)
	}
}

type query struct{ typ, name, expr string }

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("smallq", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:9090", "server URL")
	qfile := fs.String("queries", "", "peer-bench queries file (<type> <name> <expr> lines)")
	only := fs.String("only", "", "comma-separated query names to run (default all)")
	end := fs.Int64("end", 0, "evaluation end, unix seconds (required)")
	rng := fs.Duration("range", 2*time.Hour, "range of range, series and labels queries, ending at -end")
	step := fs.Int("step", 60, "range query step, seconds")
	n := fs.Int("n", 50, "timed runs per query (after one untimed)")
	pid := fs.Int("pid", 0, "server PID, for its CPU time per query")
	label := fs.String("label", "", "label printed first on every line")
	var params []string
	fs.Func("param", "extra k=v request parameter (repeatable)", func(s string) error { params = append(params, s); return nil })
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *end == 0 || *qfile == "" {
		return fmt.Errorf("-end and -queries are required")
	}
	qs, err := load(*qfile, *only)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	start := *end - int64(rng.Seconds())
	for _, q := range qs {
		path, form := request(q, start, *end, *step)
		for _, p := range params {
			if k, v, ok := strings.Cut(p, "="); ok {
				form.Set(k, v)
			}
		}
		do := func() ([]byte, time.Duration, error) {
			t := time.Now()
			resp, err := client.PostForm(strings.TrimRight(*base, "/")+path, form)
			if err != nil {
				return nil, 0, err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			d := time.Since(t)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: HTTP %d: %.200s", q.name, resp.StatusCode, b)
			}
			return b, d, err
		}
		body, _, err := do()
		if err != nil {
			return err
		}
		c0, err := cpuMillis(*pid)
		if err != nil {
			return err
		}
		lats := make([]float64, 0, *n)
		var total time.Duration
		for range *n {
			_, d, err := do()
			if err != nil {
				return err
			}
			total += d
			lats = append(lats, float64(d.Microseconds())/1000)
		}
		c1, err := cpuMillis(*pid)
		if err != nil {
			return err
		}
		sort.Float64s(lats)
		sum := sha256.Sum256(body)
		fmt.Fprintf(out, "%s%-8s %-20s p50 %8.2f  p90 %8.2f  mean %8.2f ms  cpu %8.2f ms/query  %7d B  %s\n",
			*label, q.typ, q.name, lats[len(lats)/2], lats[len(lats)*9/10], float64(total.Microseconds())/1000/float64(*n),
			(c1-c0)/float64(*n), len(body), hex.EncodeToString(sum[:6]))
	}
	return nil
}

func load(path, only string) ([]query, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keep := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			keep[s] = true
		}
	}
	var qs []query
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s: need '<type> <name> [expr]' in %q", path, line)
		}
		rest := strings.TrimSpace(strings.TrimPrefix(line, fields[0]))
		q := query{typ: fields[0], name: fields[1], expr: strings.TrimSpace(strings.TrimPrefix(rest, fields[1]))}
		if len(keep) > 0 && !keep[q.name] && !keep[q.typ+" "+q.name] {
			continue
		}
		qs = append(qs, q)
	}
	return qs, sc.Err()
}

// request is peer-bench's request for q (query.go's buildRequest).
func request(q query, start, end int64, step int) (string, url.Values) {
	v := url.Values{}
	switch q.typ {
	case "instant":
		v.Set("query", q.expr)
		v.Set("time", strconv.FormatInt(end, 10))
		return "/api/v1/query", v
	case "range":
		v.Set("query", q.expr)
		v.Set("start", strconv.FormatInt(start, 10))
		v.Set("end", strconv.FormatInt(end, 10))
		v.Set("step", strconv.Itoa(step))
		return "/api/v1/query_range", v
	case "series":
		v.Set("match[]", q.expr)
	case "labels":
		if q.expr != "" {
			v.Set("match[]", q.expr)
		}
	}
	v.Set("start", strconv.FormatInt(start, 10))
	v.Set("end", strconv.FormatInt(end, 10))
	if q.typ == "labels" {
		return "/api/v1/labels", v
	}
	return "/api/v1/series", v
}

// cpuMillis is the CPU time (user + system) of process pid; 0 without one.
func cpuMillis(pid int) (float64, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command (in parentheses, which may hold spaces).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q %q", pid, f[11], f[12])
	}
	return (ut + st) * 1000 / clkTck, nil
}

// clkTck is the kernel's USER_HZ (getconf CLK_TCK), 100 on Linux.
const clkTck = 100
