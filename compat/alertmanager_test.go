package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
)

// alertmanagerBinary builds (once, cached in ~/.cache/levitated-peers) the
// real Alertmanager v0.35.0 with the project's script.
func alertmanagerBinary(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join("peers", "alertmanager.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "compat/peers/alertmanager.sh: %s", stderr.String())
	return strings.TrimSpace(string(out))
}

// startAlertmanager runs Alertmanager on a free loopback port, without
// clustering, and returns its URL once it is ready.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin := alertmanagerBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n"), 0o644))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	u := "http://" + addr
	for range 500 {
		select {
		case err := <-exited:
			t.Fatalf("alertmanager exited: %v\n%s", err, logs.String())
		default:
		}
		if resp, err := http.Get(u + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("alertmanager not ready\n%s", logs.String())
	return ""
}

// amAlert is an alert of Alertmanager's GET /api/v2/alerts.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	GeneratorURL string            `json:"generatorURL"`
	StartsAt     time.Time         `json:"startsAt"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

func alertmanagerAlerts(t *testing.T, am string) []amAlert {
	t.Helper()
	resp, err := http.Get(am + "/api/v2/alerts")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	var as []amAlert
	require.NoError(t, json.Unmarshal(b, &as), string(b))
	return as
}

// writeGauge remote-writes one sample of canary_error_ratio{service="checkout"} at now.
func writeGauge(t *testing.T, u string, v float64) {
	t.Helper()
	body := requestSeries([][2]string{{"__name__", "canary_error_ratio"}, {"service", "checkout"}}, v, time.Now().UnixMilli(), "t")
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	code, msg := send(t, req)
	require.Equal(t, http.StatusNoContent, code, msg)
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const alertRules = `groups:
  - name: canary
    interval: 1s
    rules:
      - alert: CanaryErrors
        expr: canary_error_ratio > 0.1
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }}: {{ $value }} of requests fail"
`

var eventIDRE = regexp.MustCompile(`"id":\s*"([^"]+)"`)

// TestAlertmanager: levitated evaluates an alerting rule over
// remote-written data and sends the alert, with the external labels and
// the deploy that preceded it, to a real Alertmanager (v0.35.0), which
// lists it while it fires and drops it once levitated resolves it. Then
// SIGHUP reloads the rules (a bad file is refused and the rules in force
// kept), and `levitated rules check` checks files as promtool does.
func TestAlertmanager(t *testing.T) {
	am := startAlertmanager(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "canary.yml")
	require.NoError(t, os.WriteFile(rules, []byte(alertRules), 0o644))
	alerting := filepath.Join(dir, "alerting.yml")
	require.NoError(t, os.WriteFile(alerting, []byte("global:\n  external_labels:\n    cluster: eu-1\n"), 0o644))
	u, proc := startProcess(t, "--rules.file="+rules, "--alertmanager.url="+am, "--alertmanager.config-file="+alerting,
		"--web.external-url=http://levitated.example:9090")

	// levitated lists the Alertmanager as Prometheus does.
	code, body := grafanaGET(t, u, "/api/v1/alertmanagers", nil)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"activeAlertmanagers":[{"url":"`+am+`/api/v2/alerts"}]`)

	// A deploy of checkout starts, then its canary's errors climb.
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/events", strings.NewReader(fmt.Sprintf(
		`{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"checkout","version":"2.0"}}`,
		time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	code, body = send(t, req)
	require.Equal(t, http.StatusOK, code, body)
	m := eventIDRE.FindStringSubmatch(body)
	require.NotNil(t, m, body)
	deployID := m[1]
	writeGauge(t, u, 0.5)

	var got amAlert
	eventually(t, 30*time.Second, "the alert in Alertmanager", func() bool {
		for _, a := range alertmanagerAlerts(t, am) {
			if a.Labels["alertname"] == "CanaryErrors" {
				got = a
				return true
			}
		}
		return false
	})
	require.Equal(t, map[string]string{"alertname": "CanaryErrors", "service": "checkout", "severity": "page", "cluster": "eu-1"}, got.Labels)
	require.Equal(t, "active", got.Status.State)
	require.Equal(t, "checkout: 0.5 of requests fail", got.Annotations["summary"])
	require.Equal(t, deployID, got.Annotations["change_id"])
	require.Equal(t, "deploy", got.Annotations["change_event_name"])
	require.Equal(t, "checkout", got.Annotations["change_service"])
	require.Equal(t, "2.0", got.Annotations["change_version"])
	require.Equal(t, "http://levitated.example:9090/api/v1/events/"+deployID, got.Annotations["change_url"])
	require.NotEmpty(t, got.Annotations["change_started"])
	require.True(t, strings.HasPrefix(got.GeneratorURL, "http://levitated.example:9090/graph?g0.expr=canary_error_ratio"), got.GeneratorURL)

	// The errors go down: levitated resolves the alert, Alertmanager drops it.
	writeGauge(t, u, 0)
	eventually(t, 30*time.Second, "the alert to be resolved in Alertmanager", func() bool {
		for _, a := range alertmanagerAlerts(t, am) {
			if a.Labels["alertname"] == "CanaryErrors" {
				return false
			}
		}
		return true
	})

	// SIGHUP: a bad file is refused and the rules in force kept ...
	groups := func() string {
		code, body := grafanaGET(t, u, "/api/v1/rules", nil)
		require.Equal(t, http.StatusOK, code, body)
		return body
	}
	require.NoError(t, os.WriteFile(rules, []byte(strings.Replace(alertRules, "canary_error_ratio > 0.1", "canary_error_ratio >", 1)), 0o644))
	require.NoError(t, proc.Process.Signal(syscall.SIGHUP))
	eventually(t, 10*time.Second, "the reload to fail", func() bool {
		_, body := grafanaGET(t, u, "/metrics", nil)
		return strings.Contains(body, "\nlevitated_rules_last_reload_successful 0\n")
	})
	require.Contains(t, groups(), `"name":"canary"`)
	// ... and a good one taken.
	require.NoError(t, os.WriteFile(rules, []byte(strings.Replace(alertRules, "name: canary", "name: canary-v2", 1)), 0o644))
	require.NoError(t, proc.Process.Signal(syscall.SIGHUP))
	eventually(t, 10*time.Second, "the reloaded group", func() bool { return strings.Contains(groups(), `"name":"canary-v2"`) })

	// levitated rules check, as promtool check rules.
	check := func(file string) (int, string) {
		out, err := exec.Command(binary, "rules", "check", file).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		require.NoError(t, err)
		return 0, string(out)
	}
	code, out := check(rules)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "SUCCESS: 1 rules found")
	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("groups:\n  - name: a\n    rules:\n      - record: x\n        expr: nope(up)\n"), 0o644))
	code, out = check(bad)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, bad+`: 5:15: group "a", rule 1, "x": could not parse expression: 1:1: parse error: unknown function with name "nope"`)
}
