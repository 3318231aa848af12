package server_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestBadEventBodies sends event bodies with invalid UTF-8, keys given
// twice and Grafana tags without a key through the real server, on each
// event path: each is refused with 400 naming the field, and nothing is
// stored.
func TestBadEventBodies(t *testing.T) {
	srv := servertest.Start(t)
	bad := "\xff\xfe"
	for _, tc := range []struct {
		name, path, body, field string
	}{
		{"text not UTF-8", "/api/v1/events", `{"name":"deploy","state":"start","text":"a` + bad + `"}`, "text: not valid UTF-8"},
		{"attribute value not UTF-8", "/api/v1/events", `{"name":"deploy","state":"start","attributes":{"service":"a` + bad + `"}}`, "attributes.service: value is not valid UTF-8"},
		{"attribute key not UTF-8", "/api/v1/events", `{"name":"deploy","state":"start","attributes":{"k` + bad + `":"v"}}`, "key is not valid UTF-8"},
		{"batch item not UTF-8", "/api/v1/events", `{"events":[{"name":"deploy","state":"start"},{"name":"deploy","state":"start","url":"https://x/` + bad + `"}]}`, "events[1].url: not valid UTF-8"},
		{"key given twice", "/api/v1/events", `{"name":"deploy","state":"start","text":"a","text":"b"}`, "text: given twice"},
		{"attribute given twice", "/api/v1/events", `{"name":"deploy","state":"start","attributes":{"service":"a","service":"b"}}`, "attributes.service: given twice"},
		{"batch key given twice", "/api/v1/events", `{"events":[{"name":"deploy","state":"start","state":"stop"}]}`, "events[0].state: given twice"},
		{"annotation text not UTF-8", "/api/annotations", `{"tags":["deploy"],"text":"a` + bad + `"}`, "text: not valid UTF-8"},
		{"annotation tag not UTF-8", "/api/annotations", `{"tags":["deploy","x` + bad + `"]}`, "tags[1]: not valid UTF-8"},
		{"annotation tag ::", "/api/annotations", `{"tags":["::"],"text":"x"}`, `tags[0]: \"::\" has no key before its ':' or '='`},
		{"annotation tag :x", "/api/annotations", `{"tags":["deploy",":x"]}`, `tags[1]: \":x\" has no key`},
		{"Last9 attribute not UTF-8", "/api/v4/organizations/o/change_events", `{"event_name":"deploy","event_state":"start","attributes":{"a":"` + bad + `"}}`, "attributes.a: not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, srv.URL+tc.path, "application/json", []byte(tc.body))
			require.Equal(t, http.StatusBadRequest, r.code, r.body)
			require.Contains(t, r.body, tc.field)
		})
	}
	r := get(t, srv.URL, "/api/v1/events", nil)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.NotContains(t, r.body, `"deploy"`, "a refused event was stored")
	require.NotContains(t, r.body, `"::"`)

	// A name tag and key:value tags still map as documented.
	r = post(t, srv.URL+"/api/annotations", "application/json", []byte(`{"tags":["deploy","service:checkout","a::b"],"text":"ok"}`))
	require.Equal(t, http.StatusOK, r.code, r.body)
	r = get(t, srv.URL, "/api/v1/events", nil)
	require.Contains(t, r.body, `"name":"deploy"`)
	require.Contains(t, r.body, `"service":"checkout"`)
}
