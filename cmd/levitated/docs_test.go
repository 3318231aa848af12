package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// docBlock is one fenced block of a Markdown file.
type docBlock struct {
	file  string
	line  int    // of the opening fence
	lang  string // the fence's info string
	body  string
	skip  string // the reason of a <!-- not run: … --> comment just above it
	file2 string // <!-- file: PATH -->: the block is that file of the examples' directory
	exits []int  // <!-- exit: 0 or 22 -->: the exit codes the example may end with
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var (
	notRunRE = regexp.MustCompile(`^<!-- not run: (.+) -->$`)
	fileRE   = regexp.MustCompile(`^<!-- file: (\S+) -->$`)
	exitRE   = regexp.MustCompile(`^<!-- exit: ([0-9]+(?: or [0-9]+)*) -->$`)
)

// docBlocks returns the fenced blocks of the Markdown files.
func docBlocks(t *testing.T, files ...string) []docBlock {
	t.Helper()
	var out []docBlock
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		lines := strings.Split(string(b), "\n")
		for i := 0; i < len(lines); i++ {
			if !strings.HasPrefix(lines[i], "```") {
				continue
			}
			blk := docBlock{file: f, line: i + 1, lang: strings.TrimSpace(lines[i][3:])}
			for k := i - 1; k >= 0 && k >= i-2; k-- {
				l := strings.TrimSpace(lines[k])
				if m := notRunRE.FindStringSubmatch(l); m != nil {
					blk.skip = m[1]
				}
				if m := fileRE.FindStringSubmatch(l); m != nil {
					blk.file2 = m[1]
				}
				if m := exitRE.FindStringSubmatch(l); m != nil {
					for _, c := range strings.Split(m[1], " or ") {
						n, err := strconv.Atoi(c)
						require.NoError(t, err)
						blk.exits = append(blk.exits, n)
					}
				}
			}
			j := i + 1
			for j < len(lines) && !strings.HasPrefix(lines[j], "```") {
				j++
			}
			require.Less(t, j, len(lines), "%s: unclosed block", blk)
			blk.body = strings.Join(lines[i+1:j], "\n") + "\n"
			out = append(out, blk)
			i = j
		}
	}
	return out
}

// docsShellPrelude runs before every documented shell block: curl fails on
// an HTTP error (printing the body) unless the example chose its own
// --fail option, so a documented request that stops working fails the test.
const docsShellPrelude = `curl() {
  for a in "$@"; do case "$a" in --fail*) command curl "$@"; return;; --*) ;; -*f*) command curl "$@"; return;; esac; done
  command curl --fail-with-body "$@"
}
`

// TestDocsExamples runs the examples of docs/*.md and README.md (but for
// the walkthrough, which TestREADMEWalkthrough runs) against the real binary
// on a fresh data directory fed by levitated demo --url, so that an example
// that stops working fails here:
//   - every sh block runs in bash -euo pipefail (curl failing on an HTTP
//     error) with $URL, $TOKEN, $LEVITATED_SERVER, $LEVITATED_TOKEN, $ID and
//     $DEPLOY_ID set, levitated and eventctl on $PATH, the documented
//     addresses and data directories replaced by the test's; a block that
//     cannot run here (docker, kubectl, helm, a peer) says why in a
//     <!-- not run: … --> comment above it;
//   - every promql block's expressions are evaluated by /api/v1/query;
//   - every yaml and json block parses (a json block of an answer may elide
//     with …, and is then only shown).
func TestDocsExamples(t *testing.T) {
	// Mostly waiting for the impact scheduler: beside the other tests.
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq not installed")
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	require.NoError(t, err)
	blocks := docBlocks(t, append(files, filepath.Join("..", "..", "README.md"))...)
	// The README's walkthrough runs in TestREADMEWalkthrough, in order and
	// with its checks; not twice.
	walkthrough := walkthroughBlocks(t)
	inWalkthrough := 0
	for i, b := range blocks {
		// The README's first lines are the two commands a new user runs:
		// a server that runs until stopped, and the whole test suite.
		if filepath.Base(b.file) == "README.md" && b.line == 1 && b.skip == "" {
			blocks[i].skip = "the README's first two commands: a server that runs until stopped, and the test suite"
			continue
		}
		if filepath.Base(b.file) == "README.md" && b.lang == "sh" && b.skip == "" && slices.Contains(walkthrough, b.body) {
			blocks[i].skip = "run by TestREADMEWalkthrough"
			inWalkthrough++
		}
	}
	require.Equal(t, len(walkthrough), inWalkthrough, "every block of the README's walkthrough is found among its blocks")

	bin := levitatedBinary(t)
	work := t.TempDir()
	binDir := filepath.Join(work, "bin")
	require.NoError(t, os.MkdirAll(binDir, 0o755))
	require.NoError(t, os.Symlink(bin, filepath.Join(binDir, "levitated")))
	out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "eventctl"), "../eventctl").CombinedOutput()
	require.NoError(t, err, string(out))
	// The documented ./deploy.sh of eventctl run.
	require.NoError(t, os.WriteFile(filepath.Join(work, "deploy.sh"), []byte("#!/bin/sh\necho deploying to \"$1\"\n"), 0o755))

	p := start(t, bin, filepath.Join(work, "data"))
	scratch := filepath.Join(work, "scratch") // where examples that make tokens keep them
	require.NoError(t, os.MkdirAll(scratch, 0o755))

	// Seed: the demo's canary runs, then a deploy of checkout to look at.
	demo := exec.Command(bin, "demo", "--url", p.url)
	demo.Dir = work
	out, err = demo.CombinedOutput()
	require.NoError(t, err, string(out))
	// $ID and $DEPLOY_ID: a deploy of the demo that the impact scheduler
	// has judged (it looks every 15 s; the demo's changes ended minutes ago).
	var judged string
	require.Eventually(t, func() bool {
		var list struct {
			Events []struct {
				Attributes map[string]string `json:"attributes"`
			} `json:"events"`
		}
		q := url.Values{"name": {"change_impact"}, "match": {`change_name="deploy"`}}
		if getJSON(p.url+"/api/v1/events?"+q.Encode(), &list) != nil || len(list.Events) == 0 {
			return false
		}
		judged = list.Events[0].Attributes["change_id"]
		return judged != ""
	}, 3*time.Minute, time.Second, "the impact scheduler judged none of the demo's deploys")

	env := append(os.Environ(),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"URL="+p.url, "TOKEN=docs-token",
		"LEVITATED_SERVER="+p.url, "LEVITATED_TOKEN=docs-token",
		"ID="+judged, "DEPLOY_ID="+judged,
		"CI_JOB_URL=https://ci.example/job/1",
	)
	replacer := strings.NewReplacer(
		"http://127.0.0.1:9090", p.url,
		"http://levitated:9090", p.url,
		"go run ./cmd/levitated", bin,
		"--data-dir /var/lib/levitated", "--data-dir "+scratch,
		"--data-dir /data", "--data-dir "+scratch,
		"/secrets/levitated-analysis-token/token", filepath.Join(scratch, "analysis-token"),
		"/backups/", filepath.Join(scratch, "backups")+"/",
	)
	require.NoError(t, os.MkdirAll(filepath.Join(scratch, "backups"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(scratch, "analysis-token"), []byte("lev_0123456789abcdef_"+strings.Repeat("ab", 32)+"\n"), 0o600))

	// Blocks that are files (a rules file, a config) are written first, so
	// the commands that use them find them.
	for _, b := range blocks {
		if b.file2 != "" {
			path := filepath.Join(work, b.file2)
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, []byte(b.body), 0o644))
		}
	}

	ran := map[string]int{}
	var skipped []string
	for _, b := range blocks {
		b := b
		if b.skip != "" {
			skipped = append(skipped, fmt.Sprintf("%s (%s): %s", b, b.lang, b.skip))
			continue
		}
		switch b.lang {
		case "sh":
			t.Run(b.String(), func(t *testing.T) {
				script := docsShellPrelude + replacer.Replace(b.body)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
				cmd.WaitDelay = time.Second
				cmd.Dir = work
				// Each block is its own CI run: examples that show the same
				// run two ways use the same idempotency keys.
				cmd.Env = append(env, fmt.Sprintf("RUN=docs-%d", b.line))
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if errors.As(err, &exit) && slices.Contains(b.exits, exit.ExitCode()) {
					t.Logf("%s exited %d, as it may:\n%s", b, exit.ExitCode(), out)
					return
				}
				require.NoError(t, err, "%s failed:\n%s\n---\n%s", b, b.body, out)
			})
		case "promql":
			t.Run(b.String(), func(t *testing.T) {
				for _, expr := range promqlExamples(b.body) {
					if query(t, p.url, expr) == nil {
						continue
					}
					// Not one expression: one per line.
					for _, l := range strings.Split(expr, "\n") {
						require.NoError(t, query(t, p.url, l), "%s: %s", b, l)
					}
				}
			})
		case "yaml":
			t.Run(b.String(), func(t *testing.T) {
				var v any
				require.NoError(t, yaml.Unmarshal([]byte(b.body), &v), "%s is not YAML", b)
			})
		case "json":
			if strings.Contains(b.body, "…") {
				continue
			}
			t.Run(b.String(), func(t *testing.T) {
				require.True(t, json.Valid([]byte(b.body)), "%s is not JSON:\n%s", b, b.body)
			})
		default:
			continue // output, signatures, Go: shown, not run
		}
		ran[filepath.Base(b.file)+" "+b.lang]++
	}
	var keys []string
	for k := range ran {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("ran %2d %s blocks", ran[k], k)
	}
	for _, s := range skipped {
		t.Logf("not run: %s", s)
	}
	require.GreaterOrEqual(t, ran["events.md sh"], 1, "the docs' blocks were found")
	require.GreaterOrEqual(t, ran["README.md yaml"], 1, "the README's blocks were found")
}

// promqlExamples splits a promql block into paragraphs separated by blank
// lines, without # comments.
func promqlExamples(body string) []string {
	var out []string
	for _, para := range strings.Split(body, "\n\n") {
		var lines []string
		for _, l := range strings.Split(para, "\n") {
			if i := strings.Index(l, "#"); i >= 0 {
				l = l[:i]
			}
			if strings.TrimSpace(l) != "" {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			out = append(out, strings.Join(lines, "\n"))
		}
	}
	return out
}

// query runs expr as an instant query; an error says why it was refused.
func query(t *testing.T, base, expr string) error {
	t.Helper()
	resp, err := http.PostForm(base+"/api/v1/query", url.Values{"query": {expr}})
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

func getJSON(u string, into any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}
