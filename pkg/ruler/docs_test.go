package ruler_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
	"github.com/levitated/levitated/pkg/ruler"
)

// TestDocsExamples: every rule file in docs/rules.md loads as the ruler
// loads it, with levitated's parser (the event-window functions).
func TestDocsExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "rules.md"))
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	n := 0
	for i, m := range blocks {
		if !strings.HasPrefix(m[1], "groups:") {
			continue
		}
		n++
		f := filepath.Join(t.TempDir(), "example.yml")
		require.NoError(t, os.WriteFile(f, []byte(m[1]), 0o644))
		c := ruler.CheckFile(f, levpromql.NewParser(), nil)
		require.Empty(t, c.Errs, "yaml block %d of docs/rules.md", i)
		require.Positive(t, c.Rules)
	}
	require.Positive(t, n, "docs/rules.md has no rule file")
}
