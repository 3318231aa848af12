package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/server"
)

// BenchmarkImpactJudgeQuality measures the automatic change judgement
// (pkg/impact with its default signals) over synthetic changes with a known
// truth, on a real server: each change is a service with 5 minutes of
// Prometheus-client RED metrics before a deploy window and 5 minutes in it,
// scraped every 10 s, with Poisson request counts, binomial 5xx counts
// (1 % by default), log-normal latencies (median 100 ms, σ 0.5) counted
// into the client's default buckets, and a diurnal drift (±20 % traffic,
// ±10 % error rate, a 24 h sine with a random phase per service). It
// reports the share of each scenario judged fail (false fails for healthy
// changes, detections for the bad ones), the share judged inconclusive by
// traffic, and the time from a stop to its verdict.
//
//	go test ./bench -run '^$' -bench BenchmarkImpactJudgeQuality -benchtime 1x -timeout 30m
//
// LEVITATED_IMPACT_CHANGES sets the changes per scenario (default 200).
func BenchmarkImpactJudgeQuality(b *testing.B) {
	n := 200
	if v := os.Getenv("LEVITATED_IMPACT_CHANGES"); v != "" {
		fmt.Sscan(v, &n)
	}
	cfg := filepath.Join(b.TempDir(), "impact.yml")
	if err := os.WriteFile(cfg, []byte("events: {delay: 1s}\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = b.TempDir()
	o.Registry = prometheus.NewRegistry()
	o.Storage.OutOfOrderWindow = 2 * time.Hour
	o.Impact.ConfigFile = cfg
	o.Impact.Interval = 100 * time.Millisecond
	srv, err := server.New(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	url := "http://" + srv.Addr().String()

	type scenario struct {
		name     string
		rps      float64
		errAfter float64 // multiplier of the error rate in the window
		latAfter float64 // multiplier of every latency in the window
		count    int
		wantFail bool
	}
	scenarios := []scenario{
		{name: "healthy, 100 req/s", rps: 100, errAfter: 1, latAfter: 1, count: n},
		{name: "2x error rate, 100 req/s", rps: 100, errAfter: 2, latAfter: 1, count: n, wantFail: true},
		{name: "+50% latency (p99 +50%), 100 req/s", rps: 100, errAfter: 1, latAfter: 1.5, count: n, wantFail: true},
		{name: "healthy, 10 req/s", rps: 10, errAfter: 1, latAfter: 1, count: n / 4},
		{name: "2x error rate, 10 req/s", rps: 10, errAfter: 2, latAfter: 1, count: n / 4, wantFail: true},
	}
	for _, rps := range []float64{5, 3, 2, 1, 0.2} {
		scenarios = append(scenarios,
			scenario{name: fmt.Sprintf("healthy, %g req/s", rps), rps: rps, errAfter: 1, latAfter: 1, count: n / 10},
			scenario{name: fmt.Sprintf("2x error rate, %g req/s", rps), rps: rps, errAfter: 2, latAfter: 1, count: n / 10, wantFail: true})
	}

	end := time.Now().Truncate(10 * time.Second).Add(-2 * time.Minute)
	start := end.Add(-5 * time.Minute)
	begin := start.Add(-5 * time.Minute)
	r := rand.New(rand.NewSource(17))
	db := srv.DB()
	type changeRef struct {
		scenario int
		id       string
	}
	var changes []changeRef
	for si, sc := range scenarios {
		var evs []string
		for i := range sc.count {
			svc := fmt.Sprintf("s%d-%d", si, i)
			app := db.Appender(ctx)
			phase := r.Float64() * 2 * math.Pi
			var ok, bad float64
			buckets := make([]float64, len(defBuckets)+1)
			for t := begin; t.Before(end); t = t.Add(10 * time.Second) {
				diurnal := math.Sin(2*math.Pi*float64(t.Unix())/86400 + phase)
				lambda := sc.rps * 10 * (1 + 0.2*diurnal)
				errP, latM := 0.01*(1+0.1*diurnal), 1.0
				if !t.Before(start) {
					errP, latM = errP*sc.errAfter, sc.latAfter
				}
				reqs := poisson(r, lambda)
				errs := binomial(r, reqs, errP)
				ok, bad = ok+float64(reqs-errs), bad+float64(errs)
				for range reqs {
					lat := 0.1 * math.Exp(0.5*r.NormFloat64()) * latM
					k, _ := slices.BinarySearch(defBuckets, lat)
					buckets[k]++
				}
				ts := t.UnixMilli()
				add := func(v float64, nv ...string) {
					ls := labels.FromStrings(append(nv, "service", svc)...)
					if _, err := app.Append(0, ls, ts, v); err != nil {
						b.Fatal(err)
					}
				}
				add(ok, "__name__", "http_requests_total", "code", "200")
				add(bad, "__name__", "http_requests_total", "code", "500")
				cum := 0.0
				for k, le := range defBuckets {
					cum += buckets[k]
					add(cum, "__name__", "http_request_duration_seconds_bucket", "le", fmt.Sprint(le))
				}
				add(cum+buckets[len(defBuckets)], "__name__", "http_request_duration_seconds_bucket", "le", "+Inf")
			}
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
			attrs := fmt.Sprintf(`{"service":%q}`, svc)
			evs = append(evs,
				fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":%s}`, start.Format(time.RFC3339), attrs),
				fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":%s}`, end.Format(time.RFC3339), attrs))
		}
		// One batch per scenario (at most 1000 events).
		for len(evs) > 0 {
			k := min(len(evs), 1000)
			var out struct {
				Events []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"events"`
			}
			postJSON(b, url+"/api/v1/events:batch", `{"events":[`+strings.Join(evs[:k], ",")+`]}`, &out)
			for _, e := range out.Events {
				if e.State == "start" {
					changes = append(changes, changeRef{si, e.ID})
				}
			}
			evs = evs[k:]
		}
	}

	b.ResetTimer()
	verdicts := make([]map[string]int, len(scenarios))
	for i := range verdicts {
		verdicts[i] = map[string]int{}
	}
	failing := make([]map[string]int, len(scenarios))
	for i := range failing {
		failing[i] = map[string]int{}
	}
	waitStart := time.Now()
	for _, c := range changes {
		for {
			resp, err := http.Get(url + "/api/v1/events/" + c.id + "/impact")
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				var j struct {
					Verdict string
					Failing []string `json:"failing_signals"`
				}
				if err := json.Unmarshal(body, &j); err != nil {
					b.Fatal(err)
				}
				verdicts[c.scenario][j.Verdict]++
				if j.Verdict == "fail" {
					for _, f := range j.Failing {
						failing[c.scenario][f]++
					}
				}
				break
			}
			if time.Since(waitStart) > 20*time.Minute {
				b.Fatalf("change %s not judged: %s", c.id, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	all := time.Since(waitStart)
	b.StopTimer()
	b.ReportMetric(float64(len(changes))/all.Seconds(), "changes/s")

	// Time from a stop to its verdict, one change at a time on an idle
	// scheduler (a healthy 100 req/s service without new data: the data
	// above, a new window over it).
	var lat []time.Duration
	for i := range 20 {
		svc := fmt.Sprintf("s0-%d", i)
		var out struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
		}
		postJSON(b, url+"/api/v1/events:batch", fmt.Sprintf(`{"events":[
			{"name":"rollout","state":"start","timestamp":%q,"attributes":{"service":%q}},
			{"name":"rollout","state":"stop","timestamp":%q,"attributes":{"service":%q}}]}`,
			start.Add(time.Minute).Format(time.RFC3339), svc, end.Add(-time.Minute).Format(time.RFC3339), svc), &out)
		posted := time.Now()
		for {
			resp, err := http.Get(url + "/api/v1/events/" + out.Events[0].ID + "/impact")
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				lat = append(lat, time.Since(posted))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	slices.Sort(lat)

	fmt.Printf("%d changes judged in %s (%.1f changes/s, one at a time)\n", len(changes), all.Round(time.Millisecond), float64(len(changes))/all.Seconds())
	fmt.Printf("| scenario | changes | pass | marginal | fail | inconclusive | failing signals | target |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|\n")
	for i, sc := range scenarios {
		v := verdicts[i]
		target := ""
		switch {
		case sc.wantFail && sc.rps >= 100:
			target = "fail ≥ 95 %"
		case !sc.wantFail && sc.rps >= 100:
			target = "fail ≤ 2 %"
		}
		pct := func(k string) string { return fmt.Sprintf("%d (%.1f %%)", v[k], 100*float64(v[k])/float64(sc.count)) }
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %v | %s |\n", sc.name, sc.count, pct("pass"), pct("marginal"), pct("fail"), pct("inconclusive"), failing[i], target)
	}
	fmt.Printf("stop answered to verdict served (delay 1s, scheduler every 100ms, polled every 20ms), 20 changes: p50 %s, max %s\n", lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	fmt.Println()
}

// defBuckets are the Prometheus client's default histogram buckets.
var defBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// poisson draws a Poisson count: Knuth's method below 30, the normal
// approximation above.
func poisson(r *rand.Rand, lambda float64) int {
	if lambda >= 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// binomial draws the number of successes of n trials of probability p.
func binomial(r *rand.Rand, n int, p float64) int {
	if mean := float64(n) * p; n > 1000 && mean > 30 {
		return max(0, min(n, int(math.Round(mean+math.Sqrt(mean*(1-p))*r.NormFloat64()))))
	}
	k := 0
	for range n {
		if r.Float64() < p {
			k++
		}
	}
	return k
}

func postJSON(b *testing.B, u, body string, out any) {
	b.Helper()
	resp, err := http.Post(u, "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("POST %s: %d %s", u, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		b.Fatal(err)
	}
}
