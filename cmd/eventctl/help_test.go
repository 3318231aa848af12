package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/help/*.txt")

// TestHelp pins the usage and the flags of every command: a flag changes
// only with its golden file (go test ./cmd/eventctl -run TestHelp -update).
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"start", "-h"}, {"stop", "-h"}, {"run", "-h"}, {"list", "-h"}, {"get", "-h"}, {"tail", "-h"}, {"impact", "-h"}, {"gate", "-h"}} {
		name := "eventctl"
		if len(args) > 1 {
			name = args[0]
		}
		t.Run(name, func(t *testing.T) {
			r := eventctl(t, context.Background(), map[string]string{}, args...)
			require.Equal(t, 0, r.code)
			golden := filepath.Join("testdata", "help", name+".txt")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(r.stderr), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			require.Equal(t, string(want), r.stderr)
		})
	}
}
