package webconfig

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// TestUsersReload re-reads users and headers when the file changes, and
// keeps the last good configuration when it stops loading.
func TestUsersReload(t *testing.T) {
	f := filepath.Join(t.TempDir(), "web.yml")
	h1, err := bcrypt.GenerateFromPassword([]byte("a"), bcrypt.MinCost)
	require.NoError(t, err)
	h2, err := bcrypt.GenerateFromPassword([]byte("b"), bcrypt.MinCost)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(f, []byte("basic_auth_users:\n  alice: "+string(h1)+"\n"), 0o600))
	c, err := Load(f)
	require.NoError(t, err)
	require.False(t, c.TLSEnabled())
	require.Equal(t, map[string]string{"alice": string(h1)}, c.Users())
	cfg, err := c.TLSConfig([]string{"h2"})
	require.NoError(t, err)
	require.Nil(t, cfg)

	require.NoError(t, os.WriteFile(f, []byte("basic_auth_users:\n  bob: "+string(h2)+"\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"), 0o600))
	require.NoError(t, os.Chtimes(f, time.Now().Add(time.Minute), time.Now().Add(time.Minute)))
	c.lastCheck.Store(0)
	require.Equal(t, map[string]string{"bob": string(h2)}, c.Users())
	require.Equal(t, map[string]string{"X-Frame-Options": "deny"}, c.Headers())

	require.NoError(t, os.WriteFile(f, []byte("basic_auth_users: [\n"), 0o600))
	require.NoError(t, os.Chtimes(f, time.Now().Add(2*time.Minute), time.Now().Add(2*time.Minute)))
	c.lastCheck.Store(0)
	require.Equal(t, map[string]string{"bob": string(h2)}, c.Users())

	_, err = Load(filepath.Join(t.TempDir(), "missing.yml"))
	require.Error(t, err)
	require.NoError(t, os.WriteFile(f, []byte("http_server_config:\n  headers:\n    Set-Cookie: x\n"), 0o600))
	_, err = Load(f)
	require.ErrorContains(t, err, "Set-Cookie may not be set")
}
