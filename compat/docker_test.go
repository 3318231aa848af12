package compat

import (
	"bufio"
	"debug/elf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// There is no container engine here, so deploy/docker/Dockerfile is checked
// in parts: its build command, run as written, gives a static binary; that
// binary serves the health check's and the probes' paths when started as
// the image starts it; and the image's user, volume, port and entrypoint
// are as documented.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../deploy/docker/Dockerfile")
	require.NoError(t, err)
	df := string(b)
	for _, want := range []string{
		"USER 65534:65534", `VOLUME ["/data"]`, "EXPOSE 9090",
		`ENTRYPOINT ["/bin/levitated"]`, `CMD ["--listen-address=:9090", "--data-dir=/data"]`,
		"http://127.0.0.1:9090/-/ready", "COPY --from=build --chown=65534:65534 /out/data /data",
	} {
		require.Contains(t, df, want)
	}

	m := regexp.MustCompile(`CGO_ENABLED=0 go build (.*?) -o /out/levitated ./cmd/levitated`).FindStringSubmatch(df)
	require.NotNil(t, m, "the Dockerfile's build command")
	flags := strings.ReplaceAll(m[1], "${VERSION}", "docker-test")
	out := filepath.Join(t.TempDir(), "levitated")
	args := []string{"build"}
	// -trimpath -ldflags "-s -w -X main.version=…": split, keeping the
	// quoted -ldflags value whole.
	for _, f := range regexp.MustCompile(`"[^"]*"|\S+`).FindAllString(flags, -1) {
		args = append(args, strings.Trim(f, `"`))
	}
	build := exec.Command("go", append(args, "-o", out, "./cmd/levitated")...)
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	o, err := build.CombinedOutput()
	require.NoError(t, err, string(o))

	f, err := elf.Open(out)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "a static binary has no program interpreter")
		require.NotEqual(t, elf.PT_DYNAMIC, p.Type, "a static binary has no dynamic section")
	}
	v, err := exec.Command(out, "--version").Output()
	require.NoError(t, err)
	require.Contains(t, string(v), "docker-test")

	// Started as the image starts it (on a loopback port here), it
	// answers the probes' paths.
	cmd := exec.Command(out, "--listen-address=127.0.0.1:0", "--data-dir="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		require.NoError(t, cmd.Wait())
	}()
	addr := ""
	sc := bufio.NewScanner(stderr)
	for addr == "" && sc.Scan() {
		if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	require.NotEmpty(t, addr, "levitated did not log its address")
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}
