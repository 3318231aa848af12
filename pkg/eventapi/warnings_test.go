package eventapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

// doHeader is do that also returns the response's Warning headers.
func (s *testServer) doHeader(t *testing.T, method, path, body string, hdr ...string) (int, string, []string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header.Values("Warning")
}

// A stop that matches no window, and a start beside an identical open
// window, are stored (2xx) but warned about on every write path: REST
// (single and batch), gRPC, Last9 and Grafana annotations.
func TestUnmatchedStopWarnings(t *testing.T) {
	s := startServer(t)
	b := base()
	org := []string{"X-Scope-OrgID", "team-w"}
	const unmatched = `stop matched no open window: no open "deploy" window started at or before `

	// REST: the start is quiet; the typo'd stop warns in the body and a header.
	code, body, warn := s.doHeader(t, "POST", "/api/v1/events",
		fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"checkout","weight":"20"}}`, b.Unix()), org...)
	require.Equal(t, 200, code, body)
	require.Empty(t, warn)
	require.Contains(t, body, `"warnings":[]`)
	code, body, warn = s.doHeader(t, "POST", "/api/v1/events",
		fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%d,"attributes":{"service":"typo"}}`, b.Add(time.Minute).Unix()), org...)
	require.Equal(t, 200, code, body)
	require.Len(t, warn, 1)
	require.True(t, strings.HasPrefix(warn[0], `299 levitated "`+strings.ReplaceAll(unmatched, `"`, `\"`)), warn[0])
	resp := decode[struct {
		Event struct {
			Window   any      `json:"window"`
			Warnings []string `json:"warnings"`
		} `json:"event"`
	}](t, body)
	require.Nil(t, resp.Event.Window)
	require.Len(t, resp.Event.Warnings, 1)
	require.Contains(t, resp.Event.Warnings[0], unmatched)
	require.Contains(t, resp.Event.Warnings[0], `has only attributes that this stop has with the same values {service="typo"}; the stop is kept as a point event; open "deploy" windows: `)
	require.Contains(t, resp.Event.Warnings[0], ` {service="checkout", weight="20"} since `)

	// A second identical start leaves the first open: warned.
	code, body, warn = s.doHeader(t, "POST", "/api/v1/events:batch",
		fmt.Sprintf(`{"events":[{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"checkout","weight":"20"}}]}`, b.Add(2*time.Minute).Unix()), org...)
	require.Equal(t, 200, code, body)
	require.Len(t, warn, 1)
	require.Contains(t, warn[0], "start leaves window ")
	require.Contains(t, body, `"warnings":["start leaves window `)

	// The right stop closes the newest window, with no warning.
	code, body, warn = s.doHeader(t, "POST", "/api/v1/events",
		fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%d,"attributes":{"service":"checkout","weight":"20","exit_code":"0"}}`, b.Add(3*time.Minute).Unix()), org...)
	require.Equal(t, 200, code, body)
	require.Empty(t, warn, body)

	// gRPC: the warning is a field of the stored event.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-scope-orgid", "team-w")
	out, err := s.client.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
		Name: "deploy", State: "stop", Attributes: map[string]string{"service": "typo"}, Timestamp: timestamppb.New(b.Add(4 * time.Minute)),
	}})
	require.NoError(t, err)
	require.Len(t, out.GetEvent().GetWarnings(), 1)
	require.Contains(t, out.GetEvent().GetWarnings()[0], unmatched)

	// Last9.
	code, body, warn = s.doHeader(t, "PUT", "/api/v4/organizations/acme/change_events",
		fmt.Sprintf(`{"timestamp":%q,"event_name":"deploy","event_state":"stop","attributes":{"service":"typo"}}`, b.Add(5*time.Minute).Format(time.RFC3339)), org...)
	require.Equal(t, 200, code, body)
	require.Len(t, warn, 1)
	require.Contains(t, body, `"warnings":["stop matched no open window`)
	require.Contains(t, body, `"message":"success"`)

	// Grafana annotation without timeEnd is a stop; tags name it.
	code, body, warn = s.doHeader(t, "POST", "/api/annotations",
		fmt.Sprintf(`{"time":%d,"tags":["deploy","service:typo"],"text":"x"}`, b.Add(6*time.Minute).UnixMilli()), org...)
	require.Equal(t, 200, code, body)
	require.Len(t, warn, 1)
	require.Contains(t, body, `"warnings":["stop matched no open window`)

	// Nothing of this is stored: a listed event has no warnings.
	for _, e := range s.list(t, "", org...) {
		code, body := s.do(t, "GET", "/api/v1/events/"+e.ID, "", org...)
		require.Equal(t, 200, code)
		require.Contains(t, body, `"warnings":[]`)
	}
}
