package kayenta_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzStartExecution posts any body to POST /canary and POST /canaryConfig
// (the execution is stored but not run): the answer is 200, or a 4xx with
// Kayenta's {"message"}, never a 500 or a panic.
//
//	go test ./pkg/kayenta -run '^$' -fuzz FuzzStartExecution -fuzztime 1m
func FuzzStartExecution(f *testing.F) {
	end := time.Date(2026, 1, 15, 13, 0, 0, 0, time.UTC)
	good := fmt.Sprintf(`{"canaryConfig": %s, "executionRequest": %s}`, checkoutConfig, argoRequest("baseline", "canary", end.Add(-time.Hour), end, 10, 95, 75))
	f.Add(good)
	f.Add(checkoutConfig)
	f.Add(strings.Replace(good, `"step":10`, `"step":"ten"`, 1))
	f.Add(strings.Replace(good, `"pass":95`, `"pass":null`, 1))
	f.Add(strings.Replace(good, `"metrics": [`, `"metrics": [null, `, 1))
	f.Add(strings.Replace(good, `"groupWeights": {`, `"groupWeights": {"x": -1, `, 1))
	f.Add(strings.Replace(good, `"PromQL:sum(`, `"PromQL:sum(${`, 1))
	f.Add(`{"canaryConfig": {"metrics": [{"query": {"type": "prometheus", "customFilterTemplate": "x"}}]}, "executionRequest": {"scopes": {"": {}}}}`)
	f.Add(`[]`)
	f.Add(`{"canaryConfig": 1}`)
	e := openEnv(f, f.TempDir(), envOptions{})
	f.Fuzz(func(t *testing.T, body string) {
		e.t = t
		for _, path := range []string{"/canary", "/canaryConfig"} {
			code, b := e.do(http.MethodPost, path, body)
			if code == http.StatusOK {
				continue
			}
			if code < 400 || code >= 500 {
				t.Fatalf("POST %s %q: status %d: %s", path, body, code, b)
			}
			var msg struct{ Message string }
			if err := json.Unmarshal(b, &msg); err != nil || msg.Message == "" {
				t.Fatalf("POST %s %q: %d without a message: %s", path, body, code, b)
			}
		}
	})
}
