package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestTokensChangeWhileRunning creates the first token and revokes one in
// the data directory while the server runs: the first token turns
// authentication on, the revoked one is refused, within the reload
// interval.
func TestTokensChangeWhileRunning(t *testing.T) {
	dir := t.TempDir()
	srv := servertest.Start(t, func(o *serverOptions) { o.DataDir = dir })
	q := authReq{path: "/api/v1/query?query=1"}
	require.Equal(t, http.StatusOK, send(t, srv.URL, "", q).code, "no token yet: no authentication")

	store := auth.NewStore(dir + "/" + auth.TokenFileName)
	tok, rec, err := store.Create("team-a", []auth.Scope{auth.ScopeRead}, "", time.Now())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return send(t, srv.URL, "", q).code == http.StatusUnauthorized }, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusOK, send(t, srv.URL, tok, q).code)

	_, err = store.Revoke(rec.ID, time.Now())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return send(t, srv.URL, tok, q).code == http.StatusUnauthorized }, 5*time.Second, 50*time.Millisecond)
	// Every token revoked: authentication stays on.
	require.Equal(t, http.StatusUnauthorized, send(t, srv.URL, "", q).code)
}

// TestTrustedProxy takes the tenant from X-Scope-OrgID only in
// trusted-proxy mode.
func TestTrustedProxy(t *testing.T) {
	srv := servertest.Start(t, func(o *serverOptions) { o.Security.TrustedProxy = true })
	write := func(org string) response {
		h := http.Header{}
		h.Set("X-Scope-OrgID", org)
		return sendAs(t, srv.URL, h, authReq{method: http.MethodPost, path: "/api/v1/events", body: `{"name":"deploy","state":"start","attributes":{"service":"` + org + `"}}`})
	}
	require.Equal(t, http.StatusOK, write("org-1").code)
	require.Equal(t, http.StatusOK, write("org-2").code)
	for _, org := range []string{"org-1", "org-2"} {
		h := http.Header{}
		h.Set("X-Scope-OrgID", org)
		r := sendAs(t, srv.URL, h, authReq{path: "/api/v1/events"})
		require.Equal(t, http.StatusOK, r.code)
		require.Contains(t, r.body, `"service":"`+org+`"`)
		other := map[string]string{"org-1": "org-2", "org-2": "org-1"}[org]
		require.NotContains(t, r.body, other)
	}
	r := write("a|b")
	require.Equal(t, http.StatusUnauthorized, r.code)
	require.Contains(t, r.body, "across tenants")
	r = write("a/b")
	require.Equal(t, http.StatusUnauthorized, r.code)

	// Without the mode, the header is ignored: everything is the default
	// tenant's.
	plain := servertest.Start(t)
	h := http.Header{}
	h.Set("X-Scope-OrgID", "org-1")
	require.Equal(t, http.StatusOK, sendAs(t, plain.URL, h, authReq{method: http.MethodPost, path: "/api/v1/events", body: `{"name":"deploy","state":"start"}`}).code)
	h.Set("X-Scope-OrgID", "org-2")
	r = sendAs(t, plain.URL, h, authReq{path: "/api/v1/events"})
	require.Contains(t, r.body, `"deploy"`)
}
