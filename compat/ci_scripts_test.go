package compat

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// rolloutState is what `kubectl get rollout -o json` shows at one poll.
type rolloutState struct {
	phase string
	step  int
	abort bool
}

// fakeKubectl writes a kubectl stand-in that prints the Rollout of
// deploy/argo-rollouts/rollout.yaml with each state in turn, one per call
// (the last one repeated). Everything else is real: the script, jq,
// eventctl and levitated.
func fakeKubectl(t *testing.T, states []rolloutState) string {
	t.Helper()
	dir := t.TempDir()
	steps := `[{"setWeight":20},{"pause":{"duration":"5m"}},{"analysis":{}},{"setWeight":40},{"pause":{"duration":"5m"}},{"analysis":{}},` +
		`{"setWeight":60},{"pause":{"duration":"5m"}},{"analysis":{}},{"setWeight":80},{"pause":{"duration":"5m"}},{"analysis":{}}]`
	for i, s := range states {
		doc := fmt.Sprintf(`{"kind":"Rollout","metadata":{"name":"checkout","namespace":"shop"},"spec":{"strategy":{"canary":{"steps":%s}}},`+
			`"status":{"phase":%q,"currentStepIndex":%d,"abort":%t}}`, steps, s.phase, s.step, s.abort)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("state%d.json", i)), []byte(doc), 0o644))
	}
	script := fmt.Sprintf(`#!/bin/sh
# kubectl -n shop get rollout checkout -o json
[ "$1 $2 $3 $4 $5 $6 $7" = "-n shop get rollout checkout -o json" ] || { echo "unexpected: $*" >&2; exit 2; }
n=$(cat %[1]s/calls 2>/dev/null || echo 0)
i=$n; [ "$i" -ge %[2]d ] && i=%[3]d
cat %[1]s/state$i.json
echo $((n + 1)) > %[1]s/calls
`, dir, len(states), len(states)-1)
	p := filepath.Join(dir, "kubectl")
	require.NoError(t, os.WriteFile(p, []byte(script), 0o755))
	return p
}

type listedEvent struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Attributes map[string]string `json:"attributes"`
	Window     *struct {
		Open bool `json:"open"`
	} `json:"window"`
}

func listEvents(t *testing.T, u string) []listedEvent {
	t.Helper()
	resp, err := http.Get(u + "/api/v1/events?limit=1000")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out struct {
		Events []listedEvent `json:"events"`
	}
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return out.Events
}

// TestMarkStagesScript runs deploy/argo-rollouts/ci/mark-stages.sh with the
// real eventctl against the binary, a kubectl stand-in playing the
// Rollout's progress: a rollout aborted at 40 % and one promoted. It checks
// the windows the script leaves in levitated and its exit status, and that
// a rerun with the same run id stores nothing twice.
func TestMarkStagesScript(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("jq is not installed (.ci/run installs it with apt-get)")
		}
		t.Skip("jq is not installed")
	}
	eventctl := filepath.Join(t.TempDir(), "eventctl")
	build := exec.Command("go", "build", "-o", eventctl, "./cmd/eventctl")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	run := func(t *testing.T, u string, states []rolloutState) (int, string) {
		cmd := exec.Command("bash", "../deploy/argo-rollouts/ci/mark-stages.sh")
		cmd.Env = append(os.Environ(), "LEVITATED_SERVER="+u, "ROLLOUT=checkout", "NAMESPACE=shop", "SERVICE=checkout",
			"REVISION=1.5.0", "RUN_ID=run-42", "POLL=0", "TIMEOUT=60", "KUBECTL="+fakeKubectl(t, states), "EVENTCTL="+eventctl)
		b, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(b)
		}
		require.NoError(t, err, string(b))
		return 0, string(b)
	}
	windows := func(events []listedEvent) map[string]listedEvent {
		m := map[string]listedEvent{}
		for _, e := range events {
			if e.State == "start" {
				m[e.Name+"/"+e.Attributes["weight"]] = e
			}
		}
		return m
	}
	stops := func(events []listedEvent) map[string]string {
		m := map[string]string{}
		for _, e := range events {
			if e.State == "stop" {
				m[e.Name+"/"+e.Attributes["weight"]] = e.Attributes["outcome"] + e.Attributes["result"]
			}
		}
		return m
	}

	t.Run("rolled back at 40", func(t *testing.T) {
		u := start(t)
		states := []rolloutState{{"Progressing", 0, false}, {"Paused", 1, false}, {"Progressing", 2, false},
			{"Progressing", 3, false}, {"Paused", 4, false}, {"Degraded", 5, true}}
		code, out := run(t, u, states)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "stage 20 % started")
		require.Contains(t, out, "stage 40 % started")
		require.Contains(t, out, "rollout shop/checkout: rolled-back")
		ev := listEvents(t, u)
		w := windows(ev)
		require.Len(t, w, 3, "deploy, canary-step 20 and 40: %v", w)
		for k, e := range w {
			require.False(t, e.Window.Open, "%s closed", k)
		}
		require.Equal(t, map[string]string{"canary-step/20": "passed", "canary-step/40": "rolled-back", "deploy/": "rolled-back"}, stops(ev))

		// A rerun of the same pipeline run stores nothing twice.
		code, out = run(t, u, states)
		require.Equal(t, 1, code, out)
		require.Len(t, listEvents(t, u), len(ev))
	})

	t.Run("promoted", func(t *testing.T) {
		u := start(t)
		var states []rolloutState
		for i := 0; i < 12; i++ {
			states = append(states, rolloutState{"Progressing", i, false})
		}
		states = append(states, rolloutState{"Healthy", 12, false})
		code, out := run(t, u, states)
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "rollout shop/checkout: promoted")
		ev := listEvents(t, u)
		require.Len(t, windows(ev), 5)
		require.Equal(t, map[string]string{"canary-step/20": "passed", "canary-step/40": "passed", "canary-step/60": "passed",
			"canary-step/80": "promoted", "deploy/": "promoted"}, stops(ev))
		for _, e := range ev {
			require.Equal(t, "checkout", e.Attributes["service"], "%+v", e)
		}
		require.True(t, strings.HasPrefix(out, "stage 20 % started"), out)
	})
}

// TestGitHubActionsExample parses the workflow and checks that the scripts
// it runs exist and that it passes mark-stages.sh what the script requires.
// (No GitHub runner here: the job itself is not run.)
func TestGitHubActionsExample(t *testing.T) {
	b, err := os.ReadFile("../deploy/argo-rollouts/ci/github-actions.yaml")
	require.NoError(t, err)
	var wf struct {
		Jobs map[string]struct {
			Env   map[string]string `json:"env"`
			Steps []struct {
				Name string `json:"name"`
				Run  string `json:"run"`
				Uses string `json:"uses"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal(b, &wf))
	job, ok := wf.Jobs["rollout"]
	require.True(t, ok)
	for _, v := range []string{"LEVITATED_SERVER", "ROLLOUT", "NAMESPACE", "SERVICE", "REVISION", "RUN_ID"} {
		require.Contains(t, job.Env, v)
	}
	ran := false
	for _, s := range job.Steps {
		if strings.HasPrefix(s.Run, "./deploy/") {
			_, err := os.Stat(".." + strings.TrimPrefix(strings.Fields(s.Run)[0], "."))
			require.NoError(t, err, s.Name)
			ran = true
		}
	}
	require.True(t, ran, "the workflow runs mark-stages.sh")
}
