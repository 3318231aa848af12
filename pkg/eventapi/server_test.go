package eventapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
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

// testServer is the event service served as the levitated server serves
// it: one listener on 127.0.0.1, h2c, gRPC and HTTP on the same port, the
// tenant taken from X-Scope-OrgID (standing in for the server's auth).
type testServer struct {
	url    string
	addr   string
	store  *eventstore.Store
	client levitatedv1.EventServiceClient
	http   *http.Client
}

// tenantIDs resolves tenant names to ids as storage.DB.TenantID would.
type tenantIDs struct {
	mu  sync.Mutex
	ids map[string]uint32
}

func (r *tenantIDs) resolve(_ context.Context, name string) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.ids[name]; ok {
		return id, nil
	}
	id := uint32(len(r.ids) + 1)
	r.ids[name] = id
	return id, nil
}

func tenantUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(withTenantMD(ctx), req)
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tenantStream) Context() context.Context { return s.ctx }

func tenantStreamInt(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, tenantStream{ss, withTenantMD(ss.Context())})
}

func withTenantMD(ctx context.Context) context.Context {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-scope-orgid"); len(v) > 0 {
			return tenant.NewContext(ctx, v[0])
		}
	}
	return ctx
}

// serveJSON answers the errors f returns as the server does, in the
// plain-JSON shape of Last9 and Grafana.
func serveJSON(f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			writeHTTPError(w, err)
		}
	})
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	db := storagetest.Open(t, t.TempDir())
	store := eventstore.New(storagetest.Namespace(t, db, storage.OwnerEvents), eventstore.Options{})
	ids := &tenantIDs{ids: map[string]uint32{}}
	svc := NewEventService(store, tenant.IDFunc(ids.resolve), EventServiceOptions{})

	gs := grpc.NewServer(grpc.UnaryInterceptor(tenantUnary), grpc.StreamInterceptor(tenantStreamInt))
	levitatedv1.RegisterEventServiceServer(gs, svc)
	gw := runtime.NewServeMux()
	require.NoError(t, RegisterEventGateway(context.Background(), gw, svc))
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", gw)
	mux.Handle("PUT /api/v4/organizations/{org}/change_events", serveJSON(NewLast9Handler(svc).Serve))
	mux.Handle("POST /api/annotations", serveJSON(NewAnnotationsHandler(svc).Serve))
	mux.Handle("POST /api/v4/oauth/access_token", NewLast9TokenHandler(nil))
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		if org := r.Header.Get("X-Scope-OrgID"); org != "" {
			r = r.WithContext(tenant.NewContext(r.Context(), org))
		}
		mux.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h2c.NewHandler(root, &http2.Server{})}
	go func() { _ = srv.Serve(ln) }()

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		require.NoError(t, conn.Close())
		hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		gs.Stop()
		require.NoError(t, db.Close())
	})
	return &testServer{
		url: "http://" + ln.Addr().String(), addr: ln.Addr().String(), store: store,
		client: levitatedv1.NewEventServiceClient(conn), http: hc,
	}
}

// do sends an HTTP request and returns the status and body.
func (s *testServer) do(t *testing.T, method, path, body string, hdr ...string) (int, string) {
	t.Helper()
	code, b, _ := s.doHeader(t, method, path, body, hdr...)
	return code, b
}

// restEvent is the REST JSON of an event, as the gateway writes it.
type restEvent struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	State          string            `json:"state"`
	Timestamp      string            `json:"timestamp"`
	Attributes     map[string]string `json:"attributes"`
	Text           string            `json:"text"`
	URL            string            `json:"url"`
	Source         string            `json:"source"`
	IdempotencyKey string            `json:"idempotency_key"`
	Value          *float64          `json:"value"`
	StartID        string            `json:"start_id"`
	Window         *struct {
		StartID string `json:"start_id"`
		Start   string `json:"start"`
		StopID  string `json:"stop_id"`
		End     string `json:"end"`
		Open    bool   `json:"open"`
	} `json:"window"`
}

func (s *testServer) list(t *testing.T, query string, hdr ...string) []restEvent {
	t.Helper()
	code, body := s.do(t, http.MethodGet, "/api/v1/events?limit=1000&"+query, "", hdr...)
	require.Equal(t, http.StatusOK, code, body)
	var resp struct {
		Events []restEvent `json:"events"`
		Next   string      `json:"next_page_token"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &resp))
	require.Empty(t, resp.Next)
	return resp.Events
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(body), &v), body)
	return v
}

// readLines reads newline-delimited JSON objects from r into ch.
func readLines(r io.Reader, ch chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ch <- sc.Text()
	}
	close(ch)
}
