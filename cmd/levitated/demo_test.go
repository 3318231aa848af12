package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDemoCommand(t *testing.T) {
	report := filepath.Join(t.TempDir(), "r.html")
	var out, errs bytes.Buffer
	code := runDemo([]string{"--scenario", "regression", "--report", report}, strings.NewReader(""), &out, &errs)
	require.Equal(t, 0, code, errs.String())
	require.Contains(t, out.String(), "-> ROLLED BACK")
	require.Contains(t, out.String(), "report: "+report)
	_, err := os.Stat(report)
	require.NoError(t, err)

	// --pause reads a line per stage; a closed input stops the demo.
	out.Reset()
	errs.Reset()
	code = runDemo([]string{"--scenario", "healthy", "--pause", "--report", ""}, strings.NewReader("\n"), &out, &errs)
	require.Equal(t, 1, code)
	require.Equal(t, 2, strings.Count(out.String(), "paused run=healthy"), out.String())
	require.Contains(t, errs.String(), "standard input closed while paused")

	for _, args := range [][]string{{"--scenario", "bogus"}, {"extra"}, {"--log.level", "loud"}, {"--controller", "spinnaker"}} {
		errs.Reset()
		require.Equal(t, 2, runDemo(args, strings.NewReader(""), &out, &errs), args)
		require.NotEmpty(t, errs.String(), args)
	}
}
