package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var tokenRE = regexp.MustCompile(`^lev_([0-9a-f]{16})_[0-9a-f]{64}\n$`)

// TestTokenCommands creates, lists and revokes tokens in a data
// directory, with the server stopped and then running on it, and checks
// the real binary honours them.
func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := runToken(args, strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, _, errOut := cli("create", "--data-dir", dir, "--tenant", "a/b", "--scope", "read")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--tenant: tenant: id contains '/'")
	code, _, errOut = cli("create", "--data-dir", dir, "--tenant", "team-a", "--scope", "read,sudo")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown scope "sudo"`)
	code, _, errOut = cli("frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)

	code, tokA, errOut := cli("create", "--data-dir", dir, "--tenant", "team-a", "--scope", "read,write", "--description", "CI of team a")
	require.Equal(t, 0, code, errOut)
	m := tokenRE.FindStringSubmatch(tokA)
	require.NotNil(t, m, "stdout is the token alone: %q", tokA)
	idA := m[1]
	require.Contains(t, errOut, "printed below and never again")
	// The first token says where the data sent without one is.
	require.Contains(t, errOut, "This is the first token: from now on every request needs one")
	require.Contains(t, errOut, `Data sent without a token is in tenant "anonymous", which this token (tenant "team-a") does not see.`)
	tokA = strings.TrimSpace(tokA)
	b, err := os.ReadFile(filepath.Join(dir, "tokens.json"))
	require.NoError(t, err)
	require.NotContains(t, string(b), tokA)

	code, out, _ := cli("list", "--data-dir", dir)
	require.Equal(t, 0, code)
	require.Regexp(t, idA+`\s+team-a\s+read,write\s+\S+\s+active\s+CI of team a`, out)

	// The binary, started on the directory, takes the token and refuses
	// requests without one.
	bin := levitatedBinary(t)
	p := start(t, bin, dir)
	query := func(tok string) int {
		req, err := http.NewRequest(http.MethodGet, p.url+"/api/v1/query?query=1", nil)
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, query(tokA))
	require.Equal(t, http.StatusUnauthorized, query(""))

	// While it runs: a new token works and a revoked one stops working
	// within a second or so.
	code, tokB, _ := cli("create", "--data-dir", dir, "--tenant", "team-b", "--scope", "all")
	require.Equal(t, 0, code)
	tokB = strings.TrimSpace(tokB)
	require.Eventually(t, func() bool { return query(tokB) == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	code, out, _ = cli("revoke", "--data-dir", dir, idA)
	require.Equal(t, 0, code)
	require.Contains(t, out, "Revoked token "+idA+` of tenant "team-a"`)
	require.Eventually(t, func() bool { return query(tokA) == http.StatusUnauthorized }, 10*time.Second, 50*time.Millisecond)
	code, out, _ = cli("list", "--data-dir", dir)
	require.Equal(t, 0, code)
	require.Regexp(t, idA+`\s+team-a\s+read,write\s+\S+\s+revoked `, out)
	code, _, errOut = cli("revoke", "--data-dir", dir, "0000000000000000")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no token with this id")

	// A token kept in a secret store is stored as it is, once.
	secret := filepath.Join(t.TempDir(), "token")
	tokC := "lev_0123456789abcdef_" + strings.Repeat("c3", 32)
	require.NoError(t, os.WriteFile(secret, []byte(tokC+"\n"), 0o600))
	for _, want := range []string{"Stored token 0123456789abcdef", "is already stored"} {
		code, out, errOut = cli("create", "--data-dir", dir, "--tenant", "team-c", "--scope", "read", "--from-file", secret)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, want)
		require.NotContains(t, out, tokC)
	}
	require.Eventually(t, func() bool { return query(tokC) == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	code, _, errOut = cli("create", "--data-dir", dir, "--tenant", "team-d", "--scope", "read", "--from-file", secret)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "a different token has this id")

	stderr := p.stderr.String()
	require.NotContains(t, stderr, tokA)
	require.NotContains(t, stderr, tokB)
}

// TestRefusesNetworkWithoutToken: the binary on a non-loopback address
// with no credential exits 1 naming the ways out.
func TestRefusesNetworkWithoutToken(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"--listen-address", "0.0.0.0:0", "--data-dir", t.TempDir()}, &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "without authentication")
	require.Contains(t, errOut.String(), "--auth.insecure-allow-unauthenticated-remote-access")
}
