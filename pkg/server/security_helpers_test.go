package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// syncBuffer is a log destination shared by the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tokenSet creates tokens in a fresh token file.
type tokenSet struct {
	file  string
	store *auth.Store
}

func newTokenSet(t *testing.T) *tokenSet {
	t.Helper()
	f := filepath.Join(t.TempDir(), auth.TokenFileName)
	return &tokenSet{file: f, store: auth.NewStore(f)}
}

func (ts *tokenSet) create(t *testing.T, tenantName string, scopes ...auth.Scope) string {
	t.Helper()
	tok, _, err := ts.store.Create(tenantName, scopes, "test", time.Now())
	require.NoError(t, err)
	return tok
}

// startWithTokens starts a server reading ts's tokens and logging at debug
// level into logs.
func startWithTokens(t *testing.T, ts *tokenSet, logs *syncBuffer, opts ...func(*serverOptions)) *servertest.Server {
	t.Helper()
	all := append([]func(*serverOptions){func(o *serverOptions) {
		o.Security.TokenFile = ts.file
		if logs != nil {
			o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}}, opts...)
	return servertest.Start(t, all...)
}

// authReq is an HTTP request with a credential.
type authReq struct {
	method, path string
	body         string
	contentType  string
	header       http.Header
}

// send sends r to base with token as a bearer token (none if empty).
func send(t *testing.T, base, token string, r authReq) response {
	t.Helper()
	return sendAs(t, base, bearer(token), r)
}

func bearer(token string) http.Header {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return h
}

func basicAuth(user, pass string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	return h
}

func sendAs(t *testing.T, base string, creds http.Header, r authReq) response {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(method, base+r.path, body)
	require.NoError(t, err)
	for k, vs := range creds {
		req.Header[k] = vs
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	} else if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(t, req)
}

// grpcConn dials the server's h2c gRPC.
func grpcConn(t *testing.T, srv *servertest.Server) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// withToken returns a context sending token (and extra metadata pairs).
func withToken(token string, kv ...string) context.Context {
	ctx := context.Background()
	if token != "" {
		kv = append(kv, "authorization", "Bearer "+token)
	}
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	return ctx
}

// jsonField returns a top-level string field of a JSON object, or of its
// "event" member.
func jsonField(t *testing.T, body, field string) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m), body)
	if v, ok := m[field].(string); ok {
		return v
	}
	if e, ok := m["event"].(map[string]any); ok {
		if v, ok := e[field].(string); ok {
			return v
		}
	}
	t.Fatalf("no %q in %s", field, body)
	return ""
}

func basicCreds(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}
