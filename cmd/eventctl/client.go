package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

// client is the generated gRPC client with the token, the tenant header,
// per-attempt timeouts and retries.
type client struct {
	server  string
	conn    *grpc.ClientConn
	api     levitatedv1.EventServiceClient
	token   string
	org     string
	retries int
	backoff time.Duration
	timeout time.Duration
}

// dial parses server (http://host:port for plaintext h2c, https://host:port
// for TLS; a bare host:port is plaintext) and makes a client. It does not
// connect yet.
func dial(c config) (*client, error) {
	target, creds, err := parseServer(c.server)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", c.server, err)
	}
	return &client{
		server: c.server, conn: conn, api: levitatedv1.NewEventServiceClient(conn),
		token: c.token, org: c.org, retries: c.retries, backoff: c.backoff, timeout: c.timeout,
	}, nil
}

func parseServer(s string) (string, credentials.TransportCredentials, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		// host:port without a scheme.
		if u2, err2 := url.Parse("http://" + s); err2 == nil && u2.Host != "" && u2.Path == "" {
			return u2.Host, insecure.NewCredentials(), nil
		}
		return "", nil, fmt.Errorf("--server %q: not a URL like http://127.0.0.1:9090", s)
	}
	host := u.Host
	switch u.Scheme {
	case "http":
		if u.Port() == "" {
			host += ":80"
		}
		return host, insecure.NewCredentials(), nil
	case "https":
		if u.Port() == "" {
			host += ":443"
		}
		return host, credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12}), nil
	}
	return "", nil, fmt.Errorf("--server %q: scheme must be http or https", s)
}

func (c *client) Close() error { return c.conn.Close() }

// outgoing adds the token and tenant to ctx.
func (c *client) outgoing(ctx context.Context) context.Context {
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	if c.org != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-scope-orgid", c.org)
	}
	return ctx
}

// retryable reports whether a failed call may succeed if tried again.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// call runs f with retries on errors that may pass; calls that create
// events are safe to retry because they carry an idempotency key.
func (c *client) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	backoff := c.backoff
	var err error
	for attempt := 0; attempt <= c.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff *= 2
		}
		actx, cancel := context.WithTimeout(c.outgoing(ctx), c.timeout)
		err = f(actx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return c.explain(what, err)
}

// explain turns a gRPC error into a message that says what happened.
func (c *client) explain(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: interrupted", what)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%s: server %s is unreachable after %d attempts: %s", what, c.server, c.retries+1, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: server %s did not answer within %s (%d attempts)", what, c.server, c.timeout, c.retries+1)
	case codes.Unauthenticated:
		return fmt.Errorf("%s: server %s refused the token (set --token or LEVITATED_TOKEN): %s", what, c.server, st.Message())
	case codes.PermissionDenied:
		return fmt.Errorf("%s: server %s denied access: %s", what, c.server, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("%s: server %s does not serve the event API (is it levitated?): %s", what, c.server, st.Message())
	}
	return fmt.Errorf("%s: server refused: %s (%s)", what, st.Message(), st.Code())
}

func (c *client) create(ctx context.Context, e *levitatedv1.Event) (*levitatedv1.Event, error) {
	if e.IdempotencyKey == "" {
		e.IdempotencyKey = newKey()
	}
	var out *levitatedv1.Event
	err := c.call(ctx, e.State+" "+e.Name, func(ctx context.Context) error {
		resp, err := c.api.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: e})
		if err == nil {
			out = resp.GetEvent()
		}
		return err
	})
	return out, err
}

// newKey returns a random idempotency key.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return "eventctl-" + hex.EncodeToString(b[:])
}
