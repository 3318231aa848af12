package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levitated/levitated/pkg/demo"
	"github.com/levitated/levitated/pkg/server"
)

// env is what every test reads: a levitated holding the demo's regression
// rollout (RED metrics of service checkout by track, a deploy window and
// canary-step windows), and a finished Kayenta execution over one stage.
var env struct {
	url       string
	chromium  string
	stages    []demo.Stage
	end       time.Time // the demo's last simulated instant
	execution string    // the Kayenta execution id
}

func TestMain(m *testing.M) {
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	env.chromium = findChromium()
	if env.chromium == "" {
		fmt.Println("e2e: no Chromium found (set CHROMIUM or install Debian's chromium); skipping")
		return m.Run() // every test skips
	}
	dir, err := os.MkdirTemp("", "levitated-console-e2e-")
	if err != nil {
		log.Print(err)
		return 1
	}
	defer os.RemoveAll(dir)

	// The demo plays a real rollout against a real levitated: remote
	// write, change events, the judge. Its store is kept in dir.
	ctx := context.Background()
	env.end = time.Now().Truncate(time.Minute)
	res, err := demo.Run(ctx, demo.Options{
		Scenarios: []demo.Scenario{demo.Scenarios[1]},
		DataDir:   dir,
		Seed:      7,
		Now:       func() time.Time { return env.end },
	})
	if err != nil {
		log.Printf("demo: %v", err)
		return 1
	}
	env.stages = res[0].Stages

	// levitated again, on the demo's store, for the browser.
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = filepath.Join(dir, demo.Scenarios[1].Name)
	o.Registry = prometheus.NewRegistry()
	srv, err := server.New(o)
	if err != nil {
		log.Printf("start levitated: %v", err)
		return 1
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			log.Printf("levitated shutdown: %v", err)
		}
	}()
	env.url = "http://" + srv.Addr().String()
	if err := waitReady(env.url); err != nil {
		log.Print(err)
		return 1
	}
	if env.execution, err = startKayenta(env.url, env.stages[0]); err != nil {
		log.Printf("kayenta execution: %v", err)
		return 1
	}
	return m.Run()
}

func findChromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func waitReady(u string) error {
	for range 100 {
		resp, err := http.Get(u + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("levitated at %s did not become ready", u)
}

// kayentaConfig judges the canary pods against the baseline pods, by the
// demo's track label: the error ratio (critical) and the mean latency.
const kayentaConfig = `{
  "name": "checkout-canary", "applications": ["checkout"],
  "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
  "metrics": [
    {"name": "error-ratio", "scopeName": "default", "groups": ["errors"],
     "query": {"type": "prometheus", "serviceType": "prometheus",
               "customInlineTemplate": "PromQL:sum(rate(http_requests_total{service=\"checkout\",track=\"${scope}\",code=~\"5..\"}[1m])) / sum(rate(http_requests_total{service=\"checkout\",track=\"${scope}\"}[1m]))"},
     "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}},
    {"name": "latency-mean", "scopeName": "default", "groups": ["latency"],
     "query": {"type": "prometheus", "serviceType": "prometheus",
               "customInlineTemplate": "PromQL:sum(rate(http_request_duration_seconds_sum{service=\"checkout\",track=\"${scope}\"}[1m])) / sum(rate(http_request_duration_seconds_count{service=\"checkout\",track=\"${scope}\"}[1m]))"},
     "analysisConfigurations": {"canary": {"direction": "increase"}}}
  ],
  "classifier": {"groupWeights": {"errors": 50, "latency": 50}}
}`

// startKayenta stores the config, runs an execution over a stage and
// waits until it completes.
func startKayenta(base string, st demo.Stage) (string, error) {
	var cfg struct{ CanaryConfigID string }
	if err := call(http.MethodPost, base+"/canaryConfig", kayentaConfig, &cfg); err != nil {
		return "", err
	}
	scope := func(s string) string {
		return fmt.Sprintf(`{"scope": %q, "location": "", "step": 10, "start": %q, "end": %q}`, s, st.Start.UTC().Format(time.RFC3339), st.End.UTC().Format(time.RFC3339))
	}
	body := fmt.Sprintf(`{"scopes": {"default": {"controlScope": %s, "experimentScope": %s}}, "thresholds": {"pass": 95, "marginal": 75}}`, scope("baseline"), scope("canary"))
	var started struct{ CanaryExecutionID string }
	if err := call(http.MethodPost, base+"/canary/"+cfg.CanaryConfigID+"?application=checkout", body, &started); err != nil {
		return "", err
	}
	for range 300 {
		var st struct {
			Complete bool
			Status   string
		}
		if err := call(http.MethodGet, base+"/canary/"+started.CanaryExecutionID, "", &st); err != nil {
			return "", err
		}
		if st.Complete {
			if st.Status != "succeeded" {
				return "", fmt.Errorf("execution %s ended %s", started.CanaryExecutionID, st.Status)
			}
			return started.CanaryExecutionID, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("execution %s did not complete", started.CanaryExecutionID)
}

// call sends a JSON body (if any) and decodes a 2xx answer into out.
func call(method, u, body string, out any) error {
	return callAuth(method, u, body, "", out)
}

func callAuth(method, u, body, token string, out any) error {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// promAPI calls the Prometheus API and decodes its data.
func promAPI(t *testing.T, path string, params url.Values, out any) {
	t.Helper()
	var env struct {
		Status string
		Data   json.RawMessage
		Error  string
	}
	if err := call(http.MethodGet, envURL(path)+"?"+params.Encode(), "", &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func envURL(path string) string { return env.url + path }
