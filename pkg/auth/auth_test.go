package auth

import (
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

func TestParseScopes(t *testing.T) {
	got, err := ParseScopes("write, read,read")
	require.NoError(t, err)
	require.Equal(t, []Scope{ScopeRead, ScopeWrite}, got)
	got, err = ParseScopes("all")
	require.NoError(t, err)
	require.Equal(t, AllScopes, got)
	_, err = ParseScopes("read,delete")
	require.ErrorContains(t, err, `unknown scope "delete"`)
	_, err = ParseScopes(" , ")
	require.ErrorContains(t, err, "no scope given")
}

func TestParseAuthorization(t *testing.T) {
	tok := "lev_0123456789abcdef_" + strings.Repeat("0a", 32)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for in, want := range map[string]Credential{
		"Bearer " + tok:               {Token: tok},
		"bearer  " + tok:              {Token: tok},
		"Basic " + b64("prom:"+tok):   {Token: tok},
		"Basic " + b64("alice:s3cr"):  {User: "alice", Password: "s3cr"},
		"Basic " + b64("alice:a:b:c"): {User: "alice", Password: "a:b:c"},
		"":                            {},
	} {
		got, err := ParseAuthorization(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"Bearer", "Basic !!!", "Basic " + b64("nocolon"), "Token x", tok} {
		_, err := ParseAuthorization(in)
		require.ErrorIs(t, err, ErrBadCredentials, in)
	}
}

func TestStoreAndAuthenticate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sub", TokenFileName)
	s := NewStore(file)
	tok, rec, err := s.Create("team-a", []Scope{ScopeRead, ScopeWrite}, "ci", time.Now())
	require.NoError(t, err)
	require.Len(t, tok, TokenLength)
	require.True(t, strings.HasPrefix(tok, "lev_"+rec.ID+"_"))

	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NotContains(t, string(b), tok[len(tok)-64:], "the secret is stored")
	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	a, err := NewAuthenticator(Options{TokenFile: file, ReloadInterval: time.Millisecond})
	require.NoError(t, err)
	require.True(t, a.Enabled())
	p, err := a.Authenticate(context.Background(), Credential{Token: tok})
	require.NoError(t, err)
	require.Equal(t, Principal{Tenant: "team-a", Scopes: []Scope{ScopeRead, ScopeWrite}, Subject: "token " + rec.ID}, p)

	// Unknown id, wrong secret, malformed: one error, the same work.
	wrong := tok[:len(tok)-1] + "0"
	if wrong == tok {
		wrong = tok[:len(tok)-1] + "1"
	}
	for _, bad := range []string{wrong, "lev_ffffffffffffffff_" + strings.Repeat("00", 32), "lev_short", strings.ToUpper(tok)} {
		_, err := a.Authenticate(context.Background(), Credential{Token: bad})
		require.ErrorIs(t, err, ErrBadCredentials)
	}
	_, err = a.Authenticate(context.Background(), Credential{})
	require.ErrorIs(t, err, ErrNoCredentials)

	_, err = s.Revoke(rec.ID, time.Now())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := a.Authenticate(context.Background(), Credential{Token: tok})
		return err != nil
	}, 5*time.Second, 5*time.Millisecond)
	require.True(t, a.Enabled(), "revoking every token turned authentication off")
	_, err = s.Revoke("0000000000000000", time.Now())
	require.ErrorIs(t, err, ErrTokenNotFound)

	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.True(t, list[0].Revoked())

	_, _, err = s.Create("bad/tenant", []Scope{ScopeRead}, "", time.Now())
	require.ErrorContains(t, err, "tenant")
	_, _, err = s.Create("t", nil, "", time.Now())
	require.ErrorContains(t, err, "no scope")
}

// TestConcurrentCreates runs creators at once: the lock keeps every token.
func TestConcurrentCreates(t *testing.T) {
	file := filepath.Join(t.TempDir(), TokenFileName)
	var wg sync.WaitGroup
	toks := make([]string, 20)
	for i := range toks {
		wg.Go(func() {
			tok, _, err := NewStore(file).Create("t", []Scope{ScopeRead}, "", time.Now())
			require.NoError(t, err)
			toks[i] = tok
		})
	}
	wg.Wait()
	list, err := NewStore(file).List()
	require.NoError(t, err)
	require.Len(t, list, len(toks))
	a, err := NewAuthenticator(Options{TokenFile: file})
	require.NoError(t, err)
	for _, tok := range toks {
		_, err := a.Authenticate(context.Background(), Credential{Token: tok})
		require.NoError(t, err)
	}
}

func TestBadTokenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), TokenFileName)
	for content, want := range map[string]string{
		"{":                           "token file",
		`{"version":2,"tokens":[]}`:   "version 2",
		`{"version":1,"tokens":[{}]}`: "malformed",
	} {
		require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
		_, err := NewAuthenticator(Options{TokenFile: file})
		require.ErrorContains(t, err, want)
		_, _, err = NewStore(file).Create("t", []Scope{ScopeRead}, "", time.Now())
		require.ErrorContains(t, err, want, "a corrupt file was overwritten")
	}
	// A missing file: no tokens, authentication off.
	a, err := NewAuthenticator(Options{TokenFile: filepath.Join(t.TempDir(), "none.json")})
	require.NoError(t, err)
	require.False(t, a.Enabled())
}

func TestBasicAuthUsers(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	a, err := NewAuthenticator(Options{Users: func() map[string]string { return map[string]string{"alice": string(hash)} }})
	require.NoError(t, err)
	require.True(t, a.Enabled())
	for range 2 { // the second time from the cache
		p, err := a.Authenticate(context.Background(), Credential{User: "alice", Password: "pw"})
		require.NoError(t, err)
		require.Equal(t, "anonymous", p.Tenant)
		require.Equal(t, AllScopes, p.Scopes)
		_, err = a.Authenticate(context.Background(), Credential{User: "alice", Password: "nope"})
		require.ErrorIs(t, err, ErrBadCredentials)
		_, err = a.Authenticate(context.Background(), Credential{User: "mallory", Password: "fakepassword"})
		require.ErrorIs(t, err, ErrBadCredentials)
	}
}

func TestImport(t *testing.T) {
	file := filepath.Join(t.TempDir(), TokenFileName)
	s := NewStore(file)
	tok := "lev_00112233aabbccdd_" + strings.Repeat("5e", 32)
	rec, created, err := s.Import(tok, "team-a", []Scope{ScopeRead}, "from a secret", time.Now())
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "00112233aabbccdd", rec.ID)
	_, created, err = s.Import(tok, "team-a", []Scope{ScopeRead}, "again", time.Now())
	require.NoError(t, err)
	require.False(t, created)
	_, _, err = s.Import(tok, "team-b", []Scope{ScopeRead}, "", time.Now())
	require.ErrorIs(t, err, ErrTokenConflict)
	_, _, err = s.Import("lev_00112233aabbccdd_"+strings.Repeat("00", 32), "team-a", []Scope{ScopeRead}, "", time.Now())
	require.ErrorIs(t, err, ErrTokenConflict)
	_, _, err = s.Import("hunter2", "team-a", []Scope{ScopeRead}, "", time.Now())
	require.ErrorContains(t, err, "not a levitated token")

	a, err := NewAuthenticator(Options{TokenFile: file})
	require.NoError(t, err)
	p, err := a.Authenticate(context.Background(), Credential{Token: tok})
	require.NoError(t, err)
	require.Equal(t, "team-a", p.Tenant)
}

// TestTokenFileGoneKeepsTokens: once tokens were read, deleting the token
// file, emptying it or writing it with no tokens keeps the tokens in force
// (authentication never turns off while running) and logs it once per
// version of the file; a new file with tokens is read again.
func TestTokenFileGoneKeepsTokens(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, TokenFileName)
	store := NewStore(file)
	tok, _, err := store.Create("team-a", []Scope{ScopeRead}, "", time.Now())
	require.NoError(t, err)
	var logs syncBuffer
	a, err := NewAuthenticator(Options{TokenFile: file, ReloadInterval: time.Nanosecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	require.True(t, a.Enabled())

	for name, change := range map[string]func() error{
		"deleted":      func() error { return os.Remove(file) },
		"emptied":      func() error { return os.WriteFile(file, nil, 0o600) },
		"no tokens":    func() error { return os.WriteFile(file, []byte(`{"version":1,"tokens":[]}`), 0o600) },
		"moved away":   func() error { return os.Rename(file, file+".bak") },
		"not readable": func() error { return os.WriteFile(file, []byte(`{"version":1,`), 0o600) },
	} {
		saved, err := os.ReadFile(file)
		require.NoError(t, err)
		logs.Reset()
		require.NoError(t, change(), name)
		for range 3 {
			time.Sleep(time.Millisecond)
			require.True(t, a.Enabled(), "%s: authentication turned off", name)
			p, err := a.Authenticate(context.Background(), Credential{Token: tok})
			require.NoError(t, err, name)
			require.Equal(t, "team-a", p.Tenant)
		}
		require.Contains(t, logs.String(), "level=ERROR", name)
		require.Contains(t, logs.String(), "stay in force", name)
		require.Equal(t, 1, strings.Count(logs.String(), "level=ERROR"), "%s: logged once per version of the file:\n%s", name, logs.String())
		_ = os.Remove(file + ".bak")
		require.NoError(t, os.WriteFile(file, saved, 0o600))
	}

	// A new file with another token replaces the old set.
	require.NoError(t, os.Remove(file))
	tok2, _, err := NewStore(file).Create("team-b", []Scope{ScopeRead}, "", time.Now())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, err := a.Authenticate(context.Background(), Credential{Token: tok2})
		return err == nil && p.Tenant == "team-b"
	}, 5*time.Second, time.Millisecond)
	_, err = a.Authenticate(context.Background(), Credential{Token: tok})
	require.ErrorIs(t, err, ErrBadCredentials)
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}
