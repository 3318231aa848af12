package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The environment variable that tells the re-executed test binary it runs
// inside the namespaces, and the ones that carry what was built outside.
const (
	envInside     = "LEVITATED_KUBE_INSIDE"
	envLevitated  = "LEVITATED_KUBE_BINARY"
	envPeerPrefix = "LEVITATED_KUBE_PEER_"
	// LEVITATED_KUBE_SKIP=1 skips the package (no root, no unshare); CI
	// does not set it.
	envSkip = "LEVITATED_KUBE_SKIP"
)

// Fixed loopback ports: the namespace is ours alone.
const (
	etcdURL       = "http://127.0.0.1:23790"
	apiserverPort = "26443"
	// levitatedAddr is what the templates' address,
	// http://levitated.monitoring.svc:9090, resolves to in the namespace.
	levitatedAddr = "127.0.0.1:9090"
	levitatedURL  = "http://" + levitatedAddr
	// templateHost is the host name the templates in deploy/argo-rollouts
	// use, mapped to 127.0.0.1 by the namespace's /etc/hosts.
	templateHost = "levitated.monitoring.svc"
)

// env is the running environment, shared by the tests of the package.
var env *environment

func TestMain(m *testing.M) {
	if os.Getenv(envSkip) == "1" {
		fmt.Println("compat/kube: skipped (" + envSkip + "=1)")
		os.Exit(0)
	}
	if os.Getenv(envInside) != "1" {
		os.Exit(outside())
	}
	os.Exit(inside(m))
}

// outside builds the peers (build-peers.sh) and the levitated binary with
// the network, then runs this same test binary again inside a new network
// and mount namespace.
func outside() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "compat/kube: "+format+"\n", args...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("needs root for unshare -n -m (or set %s=1 to skip)", envSkip)
	}
	build := exec.Command("./build-peers.sh")
	build.Stderr = os.Stderr
	out, err := build.Output()
	if err != nil {
		return fail("build-peers.sh: %v", err)
	}
	dir, err := os.MkdirTemp("", "levitated-kube")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "levitated")
	gb := exec.Command("go", "build", "-o", bin, "./cmd/levitated")
	gb.Dir = "../.."
	if out, err := gb.CombinedOutput(); err != nil {
		return fail("build levitated: %v\n%s", err, out)
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost "+templateHost+"\n::1 localhost\n"), 0o644); err != nil {
		return fail("%v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail("%v", err)
	}
	// The mount namespace is private (unshare's default propagation), so
	// the bind mount of /etc/hosts is seen by the namespace alone.
	script := `set -e; mount --bind "$HOSTS" /etc/hosts; ip link set lo up; exec "$@"`
	cmd := exec.Command("unshare", append([]string{"-n", "-m", "--", "sh", "-c", script, "sh", self}, os.Args[1:]...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInside+"=1", envLevitated+"="+bin, "HOSTS="+hosts)
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			cmd.Env = append(cmd.Env, envPeerPrefix+k+"="+v)
		}
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return fail("unshare: %v", err)
	}
	return 0
}

func inside(m *testing.M) int {
	began := time.Now()
	e, err := startEnvironment()
	up := time.Since(began)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compat/kube: start the environment: %v\n", err)
		if e != nil {
			e.stop()
			e.dumpLogs(os.Stderr)
		}
		return 1
	}
	env = e
	code := m.Run()
	// For bench/RESULTS.md: how long the environment took to come up and
	// each process's peak resident memory.
	var peaks []string
	for _, p := range e.procs {
		peaks = append(peaks, fmt.Sprintf("%s %s", p.name, peakRSS(p.cmd.Process.Pid)))
	}
	fmt.Printf("compat/kube: environment up in %.1fs; peak RSS: %s\n", up.Seconds(), strings.Join(peaks, ", "))
	e.stop()
	if code != 0 {
		e.dumpLogs(os.Stderr)
	}
	return code
}

func peer(name string) string { return os.Getenv(envPeerPrefix + name) }

// environment is etcd, the API server, the Argo Rollouts controller and
// levitated, each a process of ours.
type environment struct {
	dir        string
	token      string
	kubeconfig string
	client     *http.Client
	apiserver  string
	procs      []*process // in start order; stopped in reverse
}

// process is one started peer; its output goes to a log file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (e *environment) start(name string, env []string, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(e.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	e.procs = append(e.procs, p)
	return p, nil
}

// stopProcess sends SIGTERM to the process by its PID and waits, then
// SIGKILL after 20 s.
func stopProcess(p *process) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stop stops every process in reverse start order (the controller and
// levitated, then the API server, then etcd) and removes the directory.
func (e *environment) stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		stopProcess(e.procs[i])
	}
}

func (e *environment) dumpLogs(w io.Writer) {
	for _, p := range e.procs {
		b, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(w, "---- %s (last lines of %s)\n%s\n", p.name, p.log, strings.Join(lines, "\n"))
	}
}

// waitFor polls ok every 100 ms until it is true, the process exits or the
// timeout passes.
func waitFor(p *process, timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before %s: %v (log %s)", p.name, what, p.err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s within %s (log %s)", p.name, what, timeout, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func startEnvironment() (*environment, error) {
	dir, err := os.MkdirTemp("", "levitated-kube-env")
	if err != nil {
		return nil, err
	}
	e := &environment{dir: dir, apiserver: "https://127.0.0.1:" + apiserverPort}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	e.token = hex.EncodeToString(tok)

	// etcd
	etcd, err := e.start("etcd", nil, peer("ETCD"), "--name", "t", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:23800", "--initial-advertise-peer-urls", "http://127.0.0.1:23800",
		"--initial-cluster", "t=http://127.0.0.1:23800")
	if err != nil {
		return e, err
	}
	if err := waitFor(etcd, time.Minute, "health", func() bool {
		resp, err := http.Get(etcdURL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return e, err
	}

	// kube-apiserver, with a service-account key, a token file and the
	// AlwaysAllow authorizer.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return e, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return e, err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(e.token + `,admin,admin-uid,"system:masters"` + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return e, err
		}
	}
	certs := filepath.Join(dir, "certs")
	api, err := e.start("kube-apiserver", nil, peer("KUBE_APISERVER"),
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+apiserverPort, "--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.96.0.0/24", "--cert-dir="+certs,
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=AlwaysAllow",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"))
	if err != nil {
		return e, err
	}
	caPath := filepath.Join(certs, "apiserver.crt")
	if err := waitFor(api, 2*time.Minute, "serving certificate", func() bool {
		_, err := os.Stat(caPath)
		return err == nil
	}); err != nil {
		return e, err
	}
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return e, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return e, fmt.Errorf("%s: no certificate", caPath)
	}
	e.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if err := waitFor(api, 2*time.Minute, "/readyz 200", func() bool {
		code, _, err := e.do(context.Background(), http.MethodGet, "/readyz", "", nil)
		return err == nil && code == http.StatusOK
	}); err != nil {
		return e, err
	}
	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: t, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: t, context: {cluster: t, user: admin}}]
current-context: t
`, e.apiserver, caPath, e.token)
	if err := os.WriteFile(e.kubeconfig, []byte(kc), 0o600); err != nil {
		return e, err
	}

	// Argo Rollouts' CRDs, then its controller (all controllers, one
	// cluster-wide instance, as installed in production).
	crds, err := filepath.Glob(filepath.Join(peer("ROLLOUTS_CRDS"), "*-crd.yaml"))
	if err != nil || len(crds) == 0 {
		return e, fmt.Errorf("no CRDs in %q", peer("ROLLOUTS_CRDS"))
	}
	for _, path := range crds {
		b, err := os.ReadFile(path)
		if err != nil {
			return e, err
		}
		if err := e.create(context.Background(), "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", b); err != nil {
			return e, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
	}
	for _, crd := range []string{"rollouts", "analysisruns", "analysistemplates", "clusteranalysistemplates", "experiments"} {
		if err := e.waitEstablished(crd + ".argoproj.io"); err != nil {
			return e, err
		}
	}
	if err := e.create(context.Background(), "/api/v1/namespaces", []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"argo-rollouts"}}`)); err != nil {
		return e, err
	}
	ctrl, err := e.start("rollouts-controller", []string{"POD_NAMESPACE=argo-rollouts"}, peer("ROLLOUTS_CONTROLLER"),
		"--kubeconfig="+e.kubeconfig, "--leader-elect=false", "--metricsPort=28090", "--healthzPort=28080")
	if err != nil {
		return e, err
	}
	if err := waitFor(ctrl, 2*time.Minute, "/healthz 200", func() bool {
		resp, err := http.Get("http://127.0.0.1:28080/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return e, err
	}

	// levitated where the templates look for it.
	lev, err := e.start("levitated", nil, os.Getenv(envLevitated), "--listen-address", levitatedAddr, "--data-dir", filepath.Join(dir, "levitated"))
	if err != nil {
		return e, err
	}
	if err := waitFor(lev, time.Minute, "/-/ready 200", func() bool {
		resp, err := http.Get(levitatedURL + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return e, err
	}
	return e, nil
}

// do sends one request to the API server with the admin token.
func (e *environment) do(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.apiserver+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// create POSTs a YAML or JSON object to a collection; 201 is expected.
func (e *environment) create(ctx context.Context, collection string, obj []byte) error {
	code, b, err := e.do(ctx, http.MethodPost, collection, "application/yaml", obj)
	if err != nil {
		return fmt.Errorf("POST %s: %w", collection, err)
	}
	if code != http.StatusCreated {
		return fmt.Errorf("POST %s: %d %s", collection, code, b)
	}
	return nil
}

// apply applies an object server-side (the fieldManager "levitated-test",
// with force) at its path, as kubectl apply --server-side does.
func (e *environment) apply(ctx context.Context, path string, obj []byte) ([]byte, error) {
	code, b, err := e.do(ctx, http.MethodPatch, path+"?fieldManager=levitated-test&force=true", "application/apply-patch+yaml", obj)
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w", path, err)
	}
	if code != http.StatusOK && code != http.StatusCreated {
		return nil, fmt.Errorf("apply %s: %d %s", path, code, b)
	}
	return b, nil
}

// get reads an object into v.
func (e *environment) get(ctx context.Context, path string, v any) error {
	code, b, err := e.do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, b)
	}
	return json.Unmarshal(b, v)
}

// waitEstablished waits for a CRD's Established condition.
func (e *environment) waitEstablished(name string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		var crd struct {
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		}
		if err := e.get(context.Background(), "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+name, &crd); err == nil {
			for _, c := range crd.Status.Conditions {
				if c.Type == "Established" && c.Status == "True" {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRD %s not established within a minute", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// namespace creates a namespace for one test and deletes it at cleanup.
func namespace(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	if err := env.create(ctx, "/api/v1/namespaces", []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, name))); err != nil {
		t.Fatal(err)
	}
	// The default ServiceAccount, which kube-controller-manager would
	// create (pods need it to be admitted).
	if err := env.create(ctx, "/api/v1/namespaces/"+name+"/serviceaccounts", []byte(`{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default"}}`)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _, _ = env.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+name, "", nil) })
}

// processLog returns the log of a named process of the environment, for
// failure messages.
func processLog(name string) string {
	for _, p := range env.procs {
		if p.name == name {
			b, _ := os.ReadFile(p.log)
			return string(b)
		}
	}
	return ""
}

// peakRSS reads VmHWM, a process's peak resident set, from /proc.
func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "exited"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return fmt.Sprintf("%d MB", kb/1024)
		}
	}
	return "?"
}
