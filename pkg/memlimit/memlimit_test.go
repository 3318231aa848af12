package memlimit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
}

func noEnv(string) string { return "" }

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    map[string]string
		env      string
		want     int64 // the Go limit set, 0 for none
		wantFile string
		wantErr  string
	}{{
		name: "v2 limit of the pod, looser limit above",
		files: map[string]string{
			"proc/self/cgroup":                          "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": "max\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max":    "1073741824\n",
			"sys/fs/cgroup/kubepods/memory.max":         "8589934592\n",
		},
		want: 966367641, wantFile: "sys/fs/cgroup/kubepods/pod1/memory.max",
	}, {
		name: "v2 in a container that sees its cgroup as the root",
		files: map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "536870912\n",
		},
		want: 483183820, wantFile: "sys/fs/cgroup/memory.max",
	}, {
		name: "v2 without a limit",
		files: map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		},
	}, {
		name: "v1 (this machine's layout), no limit",
		files: map[string]string{
			"proc/self/cgroup": "4:memory:/process_api/x\n1:cpu:/\n0::/\n",
			"sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": "9223372036854771712\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":               "9223372036854771712\n",
		},
	}, {
		name: "v1 with a limit, controllers listed together",
		files: map[string]string{
			"proc/self/cgroup": "7:cpuacct,memory:/docker/abc\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "2147483648\n",
		},
		want: 1932735283, wantFile: "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
	}, {
		name: "GOMEMLIMIT wins",
		files: map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "536870912\n",
		},
		env: "400MiB",
	}, {
		name:  "no cgroup file",
		files: map[string]string{},
	}, {
		name: "garbage in the limit file",
		files: map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "lots\n",
		},
		wantErr: `memory.max: "lots" is not a number of bytes`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tc.files)
			var set int64
			getenv := noEnv
			if tc.env != "" {
				getenv = func(k string) string {
					if k == "GOMEMLIMIT" {
						return tc.env
					}
					return ""
				}
			}
			d, err := Apply(root, getenv, func(n int64) int64 { set = n; return 0 })
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, set, d.Reason)
			require.Equal(t, tc.want, d.Limit)
			if tc.wantFile != "" {
				require.Equal(t, filepath.Join(root, tc.wantFile), d.Source)
			}
			require.NotEmpty(t, d.Reason)
		})
	}
}

// TestThisMachine reads the real /proc and /sys without setting anything.
func TestThisMachine(t *testing.T) {
	n, src, err := Limit("/")
	require.NoError(t, err)
	t.Logf("cgroup memory limit %d from %q", n, src)
}

func TestApplyGCPercent(t *testing.T) {
	var got []int
	set := func(p int) int { got = append(got, p); return 100 }
	p, why := ApplyGCPercent(noEnv, set)
	require.Equal(t, DefaultGCPercent, p)
	require.Equal(t, []int{DefaultGCPercent}, got)
	require.Contains(t, why, "not set")

	got = nil
	p, why = ApplyGCPercent(func(k string) string {
		if k == "GOGC" {
			return "200"
		}
		return ""
	}, set)
	require.Equal(t, -1, p)
	require.Empty(t, got, "GOGC from the environment is left alone")
	require.Equal(t, "GOGC=200 is set", why)
}
