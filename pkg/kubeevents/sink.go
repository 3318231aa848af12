package kubeevents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/levitated/levitated/pkg/events"
)

// Sink receives the events the watcher derives. Send must be idempotent by
// the event's IdempotencyKey: an event sent again is not stored again.
type Sink interface {
	Send(ctx context.Context, e events.Event) error
}

// ErrRejected wraps a refusal that sending again cannot change (a 4xx
// other than a duplicate); the watcher logs it and goes on.
var ErrRejected = errors.New("kubeevents: event rejected")

// HTTPSink posts each event to levitated's POST /api/v1/events.
type HTTPSink struct {
	// URL is levitated's base URL, e.g. http://levitated.monitoring.svc:9090.
	URL string
	// Token, if set, is sent as a bearer token (a levitated token with the
	// events scope).
	Token  string
	Client *http.Client
}

type eventJSON struct {
	Name           string            `json:"name"`
	State          string            `json:"state"`
	Timestamp      string            `json:"timestamp"`
	Attributes     map[string]string `json:"attributes,omitempty"`
	Source         string            `json:"source,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	StartKey       string            `json:"start_key,omitempty"`
}

// Send posts e. A 409 (the key was used already) counts as sent: the event
// is there. Network errors and 5xx are returned as they are, for the
// caller to retry; other refusals wrap ErrRejected.
func (s *HTTPSink) Send(ctx context.Context, e events.Event) error {
	body, err := json.Marshal(eventJSON{
		Name: e.Name, State: e.State.String(), Timestamp: e.Time.UTC().Format(time.RFC3339Nano),
		Attributes: e.Attributes, Source: e.Source, IdempotencyKey: e.IdempotencyKey, StartKey: e.StartKey,
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.URL, "/")+"/api/v1/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("post event %s: %w", e.IdempotencyKey, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode/100 == 2, resp.StatusCode == http.StatusConflict:
		return nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("post event %s: %s: %s", e.IdempotencyKey, resp.Status, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("%w: post event %s: %s: %s", ErrRejected, e.IdempotencyKey, resp.Status, bytes.TrimSpace(msg))
}
