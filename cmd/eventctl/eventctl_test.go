package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/eventapi"
	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/eventstore"
	"github.com/levitated/levitated/pkg/storage/storagetest"
	"github.com/levitated/levitated/pkg/tenant"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// server is the event service as levitated serves it (gRPC and the REST
// gateway on one h2c port of 127.0.0.1), with a token check standing in for
// the server's auth, and an optional fault: failing the first N creates
// after they were committed, as a lost response would.
type server struct {
	url        string
	store      *eventstore.Store
	failAfter  atomic.Int32
	createCall atomic.Int32
}

const token = "s3cret"

func startServer(t *testing.T) *server {
	t.Helper()
	db := storagetest.Open(t, t.TempDir())
	store := eventstore.New(storagetest.Namespace(t, db, storage.OwnerEvents), eventstore.Options{})
	svc := eventapi.NewEventService(store, tenant.IDFunc(func(context.Context, string) (uint32, error) { return 1, nil }), eventapi.EventServiceOptions{})
	s := &server{store: store}
	auth := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer "+token {
			return status.Error(codes.Unauthenticated, "missing or wrong token")
		}
		return nil
	}
	gs := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := auth(ctx); err != nil {
				return nil, err
			}
			resp, err := h(ctx, req)
			if strings.HasSuffix(info.FullMethod, "/CreateEvent") && s.createCall.Add(1) <= s.failAfter.Load() {
				return nil, status.Error(codes.Unavailable, "connection reset (injected after commit)")
			}
			return resp, err
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := auth(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	levitatedv1.RegisterEventServiceServer(gs, svc)
	gw := runtime.NewServeMux()
	require.NoError(t, eventapi.RegisterEventGateway(context.Background(), gw, svc))
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		gw.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: h2c.NewHandler(root, &http2.Server{})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		gs.Stop()
		require.NoError(t, db.Close())
	})
	s.url = "http://" + ln.Addr().String()
	return s
}

func (s *server) all(t *testing.T) []events.Event {
	t.Helper()
	evs, _, err := s.store.List(context.Background(), 1, events.Query{Limit: events.MaxLimit})
	require.NoError(t, err)
	return evs
}

type result struct {
	code           int
	stdout, stderr string
}

// eventctl runs the CLI in-process, as a user would from a shell.
func eventctl(t *testing.T, ctx context.Context, environ map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, args, env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }})
	return result{code, out.String(), errb.String()}
}

func TestStartStopGetList(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	envv := map[string]string{"LEVITATED_SERVER": s.url, "LEVITATED_TOKEN": token}
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)

	r := eventctl(t, ctx, envv, "start", "deploy", "--attr", "service=api", "--attr", "version=1.2", "--time", at.Format(time.RFC3339), "--text", "go")
	require.Equal(t, 0, r.code, r.stderr)
	startID := strings.TrimSpace(r.stdout)
	require.Len(t, startID, 26)

	r = eventctl(t, ctx, envv, "stop", "--attr", "service=api", "deploy", "--attr", "version=1.2", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var stop map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &stop), r.stdout)
	require.Equal(t, startID, stop["start_id"])

	r = eventctl(t, ctx, envv, "get", startID)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, startID+"  "+at.Format(time.RFC3339)+"  start  deploy  {service=\"api\", version=\"1.2\"}  until ")

	r = eventctl(t, ctx, envv, "list", "--match", `service="api"`, "--name", "deploy", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var listed struct {
		Events []map[string]any `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &listed), "list -o json is one JSON document: %s", r.stdout)
	require.Len(t, listed.Events, 2)

	// A stop that matches no window is stored as a point event with a
	// warning on stderr; --strict makes that exit 1.
	r = eventctl(t, ctx, envv, "start", "deploy", "--attr", "service=typo", "--attr", "weight=20")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	r = eventctl(t, ctx, envv, "stop", "deploy", "--attr", "service=typ0")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, `eventctl: warning: stop matched no open window: no open "deploy" window started at or before `)
	require.Contains(t, r.stderr, `open "deploy" windows: `)
	r = eventctl(t, ctx, envv, "stop", "deploy", "--attr", "service=typ0", "--strict")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "stop matched no open window")
	require.Contains(t, r.stderr, "eventctl: stop deploy: stored with warnings; exit 1 (--strict)\n")
	r = eventctl(t, ctx, envv, "start", "deploy", "--attr", "service=typo", "--attr", "weight=20", "--strict")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "eventctl: warning: start leaves window ")
	r = eventctl(t, ctx, envv, "stop", "deploy", "--attr", "service=typo", "--attr", "weight=20", "--strict")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)

	// Refusals are explained and exit 1.
	r = eventctl(t, ctx, envv, "start", "deploy", "--attr", "a-b=x")
	require.Equal(t, 1, r.code)
	require.Equal(t, "eventctl: start deploy: server refused: attributes.a-b: key is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*) (InvalidArgument)\n", r.stderr)
	r = eventctl(t, ctx, map[string]string{"LEVITATED_SERVER": s.url, "LEVITATED_TOKEN": "wrong"}, "start", "deploy")
	require.Equal(t, 1, r.code)
	require.Equal(t, "eventctl: start deploy: server "+s.url+" refused the token (set --token or LEVITATED_TOKEN): missing or wrong token\n", r.stderr)
	r = eventctl(t, ctx, envv, "get", "00000000000000000000000000")
	require.Equal(t, 1, r.code)
	require.Equal(t, "eventctl: get 00000000000000000000000000: server refused: event 00000000000000000000000000 not found (NotFound)\n", r.stderr)
	r = eventctl(t, ctx, envv, "start")
	require.Equal(t, 2, r.code)
	require.Len(t, s.all(t), 7)
}

func TestRunEndToEnd(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	envv := map[string]string{"LEVITATED_SERVER": s.url, "LEVITATED_TOKEN": token}

	r := eventctl(t, ctx, envv, "run", "deploy", "--attr", "service=api", "--", "sh", "-c", "echo deploying; exit 0")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "deploying\n", r.stdout)

	r = eventctl(t, ctx, envv, "run", "deploy", "--attr", "service=web", "--", "sh", "-c", "echo broken >&2; exit 3")
	require.Equal(t, 3, r.code, "eventctl exits with the command's status")
	require.Equal(t, "broken\n", r.stderr)

	r = eventctl(t, ctx, envv, "run", "migrate", "--", "/no/such/command")
	require.Equal(t, 127, r.code)
	require.Contains(t, r.stderr, "no such file or directory")

	evs := s.all(t)
	require.Len(t, evs, 6)
	type pair struct{ start, stop events.Event }
	byName := map[string]pair{}
	for _, e := range evs {
		k := e.Name + "/" + e.Attributes["service"]
		p := byName[k]
		if e.State == events.StateStart {
			p.start = e
		} else {
			p.stop = e
		}
		byName[k] = p
	}
	for k, want := range map[string]string{"deploy/api": "0", "deploy/web": "3", "migrate/": "127"} {
		p := byName[k]
		require.Equal(t, p.start.ID, p.stop.StartID, k)
		require.Equal(t, want, p.stop.Attributes["exit_code"], k)
		d, err := strconv.ParseFloat(p.stop.Attributes["duration_seconds"], 64)
		require.NoError(t, err, k)
		require.GreaterOrEqual(t, d, 0.0)
		require.False(t, p.start.Window.Open(), k)
		require.Equal(t, "eventctl", p.start.Source)
	}
}

func TestServerDown(t *testing.T) {
	// A port with nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx := context.Background()
	envv := map[string]string{"LEVITATED_SERVER": down, "LEVITATED_TOKEN": token}
	fast := []string{"--retries", "2", "--retry-backoff", "10ms"}

	r := eventctl(t, ctx, envv, append([]string{"start", "deploy"}, fast...)...)
	require.Equal(t, 1, r.code)
	require.True(t, strings.HasPrefix(r.stderr, "eventctl: start deploy: server "+down+" is unreachable after 3 attempts: "), r.stderr)

	// run: warns, runs the command anyway, exits with its status.
	marker := filepath.Join(t.TempDir(), "ran")
	r = eventctl(t, ctx, envv, append(append([]string{"run", "deploy"}, fast...), "--", "sh", "-c", "touch "+marker+"; exit 4")...)
	require.Equal(t, 4, r.code)
	require.Contains(t, r.stderr, "eventctl: warning: start deploy: server "+down+" is unreachable after 3 attempts")
	require.Contains(t, r.stderr, "running sh anyway")
	require.Contains(t, r.stderr, "eventctl: warning: stop deploy: server "+down+" is unreachable")
	_, err = os.Stat(marker)
	require.NoError(t, err, "the command ran")

	// --require-server: the command does not run.
	marker2 := filepath.Join(t.TempDir(), "ran")
	r = eventctl(t, ctx, envv, append(append([]string{"run", "deploy", "--require-server"}, fast...), "--", "touch", marker2)...)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "not running touch (--require-server)")
	_, err = os.Stat(marker2)
	require.True(t, os.IsNotExist(err))

	r = eventctl(t, ctx, envv, append([]string{"list"}, fast...)...)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "is unreachable after 3 attempts")
}

// TestRetriedStartIsStoredOnce: the server commits the start but the
// response is lost (Unavailable); eventctl retries with the same
// idempotency key and gets the original event back.
func TestRetriedStartIsStoredOnce(t *testing.T) {
	s := startServer(t)
	s.failAfter.Store(2)
	envv := map[string]string{"LEVITATED_SERVER": s.url, "LEVITATED_TOKEN": token}
	r := eventctl(t, context.Background(), envv, "start", "deploy", "--retry-backoff", "10ms")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, int32(3), s.createCall.Load(), "two lost responses, then success")
	evs := s.all(t)
	require.Len(t, evs, 1)
	require.Equal(t, strings.TrimSpace(r.stdout), evs[0].ID)
}

func TestTail(t *testing.T) {
	s := startServer(t)
	envv := map[string]string{"LEVITATED_SERVER": s.url, "LEVITATED_TOKEN": token}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"tail", "--name", "deploy", "-o", "json"}, env{stdin: strings.NewReader(""), stdout: &out, stderr: &out, getenv: func(k string) string { return envv[k] }})
	}()
	// Create events until the tail, once subscribed, prints one.
	deadline := time.Now().Add(10 * time.Second)
	var sent []string
	for !strings.Contains(out.String(), "\n") {
		require.True(t, time.Now().Before(deadline), "tail printed nothing: %q", out.String())
		r := eventctl(t, context.Background(), envv, "stop", "deploy", "--attr", "n="+strconv.Itoa(len(sent)))
		require.Equal(t, 0, r.code, r.stderr)
		sent = append(sent, strings.TrimSpace(r.stdout))
		time.Sleep(20 * time.Millisecond)
	}
	r := eventctl(t, context.Background(), envv, "stop", "scale") // filtered out
	require.Equal(t, 0, r.code)
	r = eventctl(t, context.Background(), envv, "stop", "deploy", "--attr", "last=1")
	require.Equal(t, 0, r.code)
	last := strings.TrimSpace(r.stdout)
	for !strings.Contains(out.String(), last) {
		require.True(t, time.Now().Before(deadline), "tail missed %s: %q", last, out.String())
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	require.Equal(t, 0, <-done)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var ids []string
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		require.Equal(t, "deploy", m["name"])
		ids = append(ids, m["id"].(string))
	}
	// What the tail printed is a suffix of what was sent, in order.
	all := append(sent, last)
	require.Equal(t, all[len(all)-len(ids):], ids)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
