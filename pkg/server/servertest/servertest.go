// Package servertest starts a real levitated server for tests: a store in
// t.TempDir(), HTTP and gRPC on 127.0.0.1:0, shut down by t.Cleanup.
package servertest

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levitated/levitated/pkg/server"
)

// Server is a running server and the URL it serves on.
type Server struct {
	*server.Server
	// URL is "http://127.0.0.1:<port>".
	URL string
}

// Start starts a server with DefaultOptions on 127.0.0.1:0 with a fresh
// registry and data directory; opts may adjust the options. The server is
// stopped, and its clean shutdown checked, by t.Cleanup.
func Start(t testing.TB, opts ...func(*server.Options)) *Server {
	t.Helper()
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = t.TempDir()
	o.Registry = prometheus.NewRegistry()
	for _, f := range opts {
		f(&o)
	}
	s, err := server.New(o)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return &Server{Server: s, URL: "http://" + s.Addr().String()}
}
