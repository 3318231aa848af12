package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestConsoleRoutes: with tokens required, the console's pages and bundle
// answer without a credential; other paths and methods keep their 401,
// 404 and 405; whoami names the token's tenant and scopes and needs a
// credential like the rest of the API.
func TestConsoleRoutes(t *testing.T) {
	ts := newTokenSet(t)
	tok := ts.create(t, "acme", auth.ScopeRead)
	admin := ts.create(t, "acme", auth.ScopeAdmin)
	srv := startWithTokens(t, ts, nil)

	for _, p := range []string{"/", "/graph?g0.expr=up", "/query", "/changes", "/changes/01ABC", "/analyses", "/analyses/x", "/status", "/signin"} {
		r := send(t, srv.URL, "", authReq{path: p})
		require.Equal(t, http.StatusOK, r.code, p)
		require.Contains(t, r.header.Get("Content-Type"), "text/html", p)
		require.Contains(t, r.body, `src="/app.js"`, p)
	}
	for _, p := range []string{"/app.js", "/app.css", "/chunk.js", "/Editor.js"} {
		r := send(t, srv.URL, "", authReq{path: p})
		require.Equal(t, http.StatusOK, r.code, p)
		require.NotEmpty(t, r.body)
	}
	// Not the console's: unlisted paths need admin (route.go's
	// unlisted), and answer 404 to it.
	for _, p := range []string{"/nope", "/changes/a/b", "/index.html"} {
		require.Equal(t, http.StatusUnauthorized, send(t, srv.URL, "", authReq{path: p}).code, p)
		require.Equal(t, http.StatusNotFound, send(t, srv.URL, admin, authReq{path: p}).code, p)
	}
	require.Equal(t, http.StatusMethodNotAllowed, send(t, srv.URL, "", authReq{method: http.MethodPost, path: "/query"}).code)
	require.Equal(t, http.StatusMethodNotAllowed, send(t, srv.URL, tok, authReq{method: http.MethodDelete, path: "/"}).code)

	require.Equal(t, http.StatusUnauthorized, send(t, srv.URL, "", authReq{path: "/api/v1/status/whoami"}).code)
	r := send(t, srv.URL, tok, authReq{path: "/api/v1/status/whoami"})
	require.Equal(t, http.StatusOK, r.code, r.body)
	var who struct {
		Data struct {
			Tenant       string   `json:"tenant"`
			Scopes       []string `json:"scopes"`
			AuthRequired bool     `json:"auth_required"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &who), r.body)
	require.Equal(t, "acme", who.Data.Tenant)
	require.Equal(t, []string{string(auth.ScopeRead)}, who.Data.Scopes)
	require.True(t, who.Data.AuthRequired)
}

// TestConsoleWithoutAuth: without tokens the console and whoami answer
// (the default tenant), and unknown paths are 404.
func TestConsoleWithoutAuth(t *testing.T) {
	srv := servertest.Start(t)
	require.Equal(t, http.StatusOK, send(t, srv.URL, "", authReq{path: "/"}).code)
	require.Equal(t, http.StatusNotFound, send(t, srv.URL, "", authReq{path: "/nope"}).code)
	r := send(t, srv.URL, "", authReq{path: "/api/v1/status/whoami"})
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.True(t, strings.Contains(r.body, `"auth_required":false`), r.body)
}
