package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// walkthroughBlocks returns the shell blocks of the README's "Five minutes"
// section, in order.
func walkthroughBlocks(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	readme := string(b)
	i := strings.Index(readme, "\n## Five minutes\n")
	require.GreaterOrEqual(t, i, 0, "README has a Five minutes section")
	section := readme[i+1:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestREADMEWalkthrough follows the README's five minutes as a newcomer
// would, with the real binary on a fresh data directory: every shell block
// of the section runs as written, with `go run ./cmd/levitated` being the
// built binary and the server on its own port. It checks what the README
// says each step shows, and that the first token still sees what was sent
// before it.
func TestREADMEWalkthrough(t *testing.T) {
	// Mostly waiting for the impact scheduler: beside the other tests.
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	blocks := walkthroughBlocks(t)
	require.Len(t, blocks, 2, "the walkthrough's shell blocks: steps 1-5, then the first token")

	bin := levitatedBinary(t)
	work := t.TempDir()
	p := start(t, bin, filepath.Join(work, "data")) // the README's ./data, seen from work
	sh := func(block string) string {
		t.Helper()
		script := strings.ReplaceAll(block, "go run ./cmd/levitated", bin)
		script = strings.ReplaceAll(script, "http://127.0.0.1:9090", p.url)
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "URL="+p.url) // set by step 2, in the reader's shell
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "README block failed:\n%s\n---\n%s", script, out)
		return string(out)
	}

	out := sh(blocks[0])
	// 1: the demo's outcomes.
	require.Contains(t, out, "-> PROMOTED")
	require.Contains(t, out, "-> ROLLED BACK")
	// 2: the two events were stored, with no warning.
	require.Equal(t, 2, strings.Count(out, `"name":"deploy"`), out)
	require.Contains(t, out, `"warnings":[]`)
	require.NotContains(t, out, "stop matched no open window")
	// 3: "about 15 times".
	m := regexp.MustCompile(`"track":"canary"[^]]*"value":\[[0-9.]+,"([0-9.]+)"\]`).FindStringSubmatch(out)
	require.NotNil(t, m, "after_before_ratio answered for the canary pod:\n%s", out)
	ratio, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	require.Greater(t, ratio, 10.0)
	require.Less(t, ratio, 20.0)
	// 4: the judge fails the 40 % stage.
	require.Regexp(t, `"verdict":\s*"Fail"`, out)
	require.Contains(t, out, "was classified as High (Critical)")
	// 5: the deploys were judged by themselves.
	require.Contains(t, out, `"change_name":"deploy"`)
	require.Regexp(t, `"verdict":"(pass|fail|marginal)"`, out)

	// 7: the first token, created as the README says, sees the data.
	out = sh(blocks[1])
	require.Regexp(t, `"result":\[\{"metric":\{\},"value":\[[0-9.]+,"[1-9][0-9]*"\]\}\]`, out, "count(http_requests_total) with the first token")
	require.Contains(t, out, "This is the first token")
	require.Contains(t, out, `It acts for tenant "anonymous", where everything sent without a token is`)

	// And from then on (the server reads the token file within a second) a
	// request without a token is refused.
	require.Eventually(t, func() bool {
		code, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", p.url+"/api/v1/query?query=1").Output()
		return err == nil && string(code) == "401"
	}, time.Minute, 200*time.Millisecond)
}
