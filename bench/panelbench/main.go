// Command panelbench times a Grafana panel's refreshes against a server
// that speaks the Prometheus HTTP API: for each range query of a
// peer-bench queries file, the first run over [end-range, end], then runs
// of the same range (a dashboard reloaded), then runs each shifted by one
// step more (the panel refreshed as time moves on). bench/panel-bench.sh
// runs it against levitated and VictoriaMetrics loaded by peer-bench's
// generator; the results go to bench/RESULTS.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
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
		fmt.Fprintln(os.Stderr, "panelbench:", err)
		os.Exit(1)
	}
}

type result struct {
	Name      string  `json:"name"`
	Cold      float64 `json:"cold_ms"`
	Repeat    float64 `json:"repeat_p50_ms"`
	Shifted   float64 `json:"shifted_p50_ms"`
	ShiftedHi float64 `json:"shifted_max_ms"`
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("panelbench", flag.ContinueOnError)
	base := fs.String("url", "", "base URL of the query API, e.g. http://127.0.0.1:29201")
	label := fs.String("name", "server", "name in the report")
	qfile := fs.String("queries", "", "peer-bench queries file (its range queries are run)")
	end := fs.Int64("end", 0, "end of the first range (unix seconds; the last sample)")
	rng := fs.Duration("range", 2*time.Hour, "range of the panel")
	step := fs.Duration("step", time.Minute, "step of the panel (and of each refresh's shift)")
	runs := fs.Int("runs", 10, "timed runs of each kind")
	params := fs.String("params", "", "extra query parameters, k=v&k2=v2 (e.g. nocache=1)")
	jsonOut := fs.String("json", "", "write the results here as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" || *qfile == "" || *end == 0 {
		return fmt.Errorf("--url, --queries and --end are required")
	}
	extra, err := url.ParseQuery(*params)
	if err != nil {
		return fmt.Errorf("--params: %w", err)
	}
	qs, err := rangeQueries(*qfile)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	query := func(expr string, s, e int64) (time.Duration, error) {
		v := url.Values{"query": {expr}, "start": {strconv.FormatInt(s, 10)}, "end": {strconv.FormatInt(e, 10)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
		for k, vs := range extra {
			v[k] = vs
		}
		t0 := time.Now()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, *base+"/api/v1/query_range", strings.NewReader(v.Encode()))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: %s: %s", expr, resp.Status, body)
		}
		return d, nil
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r := int64(rng.Seconds())
	st := int64(step.Seconds())
	var results []result
	fmt.Fprintf(out, "| %s: query | first run ms | same range again, p50 ms | shifted by one step per run, p50 / max ms |\n|---|---:|---:|---:|\n", *label)
	for _, q := range qs {
		s, e := *end-r, *end
		cold, err := query(q.expr, s, e)
		if err != nil {
			return err
		}
		var rep, shf []time.Duration
		for range *runs {
			d, err := query(q.expr, s, e)
			if err != nil {
				return err
			}
			rep = append(rep, d)
		}
		for i := 1; i <= *runs; i++ {
			d, err := query(q.expr, s+int64(i)*st, e+int64(i)*st)
			if err != nil {
				return err
			}
			shf = append(shf, d)
		}
		res := result{Name: q.name, Cold: ms(cold), Repeat: ms(p50(rep)), Shifted: ms(p50(shf)), ShiftedHi: ms(slicesMax(shf))}
		results = append(results, res)
		fmt.Fprintf(out, "| %s | %.1f | %.2f | %.2f / %.2f |\n", res.Name, res.Cold, res.Repeat, res.Shifted, res.ShiftedHi)
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*jsonOut, b, 0o644)
	}
	return nil
}

type namedQuery struct{ name, expr string }

// rangeQueries reads the "range NAME EXPR" lines of a peer-bench queries file.
func rangeQueries(file string) ([]namedQuery, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []namedQuery
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[0] != "range" {
			continue
		}
		out = append(out, namedQuery{fields[1], strings.Join(fields[2:], " ")})
	}
	return out, sc.Err()
}

func p50(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2]
}

func slicesMax(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
