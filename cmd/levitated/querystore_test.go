package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestQueryStoreFlags: bad --query.store flags are refused naming the flag
// or the endpoint, before anything is served.
func TestQueryStoreFlags(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte("lev_x\n"), 0o600))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--query.store", "thanos-query"}, 2, `invalid value "thanos-query" for flag -query.store: "thanos-query" is not HOST:PORT`},
		{[]string{"--query.store", "q:10901", "--query.store", "q:10901"}, 2, `"q:10901" given twice`},
		{[]string{"--query.store.tls-ca", "ca.pem"}, 2, "--query.store.tls* given without --query.store"},
		{[]string{"--query.store", "q:10901", "--query.store.tls-cert", "c.pem"}, 2, "--query.store.tls-cert and --query.store.tls-key go together"},
		{[]string{"--query.store", "q:10901", "--query.store.bearer-token-file", tok}, 1, `a bearer token is sent over TLS only, or to a loopback address`},
		{[]string{"--query.store", "127.0.0.1:10901", "--query.store.bearer-token-file", empty}, 1, "is empty"},
		{[]string{"--query.store", "q:10901", "--query.store.tenant", "a/b"}, 2, `invalid value "a/b" for flag -query.store.tenant: tenant: id contains '/'`},
		{[]string{"--query.store", "q:10901", "--query.store.tls-ca", "/nonexistent/ca.pem"}, 1, "/nonexistent/ca.pem"},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"--listen-address", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)
		require.Equal(t, tc.code, run(args, &out, &errOut), "%v: %s", tc.args, errOut.String())
		require.Contains(t, errOut.String(), tc.want, tc.args)
	}
}
