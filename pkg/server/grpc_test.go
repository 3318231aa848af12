package server_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestGRPCAndHTTPOnOnePort registers a gRPC service and an HTTP route
// through Options.Register and calls them over h2c on the same address that serves the HTTP API.
func TestGRPCAndHTTPOnOnePort(t *testing.T) {
	var registered bool
	srv := servertest.Start(t, func(o *serverOptions) {
		o.Register = append(o.Register, func(_ context.Context, s serverServices) error {
			healthpb.RegisterHealthServer(s.GRPC, health.NewServer())
			s.Routes.Handle(server.Route{Pattern: "GET /extra", Access: server.Access{Scope: auth.ScopeAdmin},
				Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("extra")) })})
			registered = s.DB != nil && s.Engine != nil
			return nil
		})
	})
	require.True(t, registered)

	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.Status)

	r := get(t, srv.URL, "/extra", nil)
	require.Equal(t, response{code: 200, body: "extra"}, stripHeader(r))
	require.Equal(t, http.StatusOK, get(t, srv.URL, "/-/ready", nil).code)
}
