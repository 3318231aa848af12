// Package webconfig reads a Prometheus web configuration file (web.yml, the
// format of github.com/prometheus/exporter-toolkit, passed to Prometheus as
// --web.config.file): TLS with client certificates, bcrypt basic-auth users,
// response headers and a request rate limit. levitated serves HTTP and gRPC
// on one listener, so the same TLS applies to both.
//
// As in exporter-toolkit, the file is re-read while the server runs: the
// TLS configuration and certificates on every new connection, the users
// and headers when the file changes (checked at most once a second). Unlike
// exporter-toolkit, TLS versions below 1.2 are refused (min_version TLS10
// or TLS11 is an error), and so is http_server_config.http2: false (gRPC
// needs HTTP/2).
package webconfig

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
)

// File is a loaded web configuration file.
type File struct {
	path string

	mu        sync.Mutex
	cur       atomic.Pointer[web.Config]
	modTime   time.Time
	lastCheck atomic.Int64
}

// Load reads and checks the file at path.
func Load(path string) (*File, error) {
	c, err := read(path)
	if err != nil {
		return nil, err
	}
	f := &File{path: path}
	f.cur.Store(c)
	if fi, err := os.Stat(path); err == nil {
		f.modTime = fi.ModTime()
	}
	f.lastCheck.Store(time.Now().UnixNano())
	return f, nil
}

// read parses the file with exporter-toolkit's defaults (TLS 1.2 to 1.3,
// HTTP/2 on) and strictness (unknown keys are errors), resolves relative
// paths against the file's directory, and checks it.
func read(path string) (*web.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read web config: %w", err)
	}
	c := &web.Config{
		TLSConfig: web.TLSConfig{
			MinVersion: tls.VersionTLS12,
			MaxVersion: tls.VersionTLS13,
		},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("web config %s: %w", path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(path))
	var errs []error
	if c.TLSConfig.MinVersion < tls.VersionTLS12 {
		errs = append(errs, fmt.Errorf("web config %s: tls_server_config.min_version: levitated needs TLS 1.2 or later", path))
	}
	if c.TLSConfig.MaxVersion != 0 && c.TLSConfig.MaxVersion < c.TLSConfig.MinVersion {
		errs = append(errs, fmt.Errorf("web config %s: tls_server_config.max_version is below min_version", path))
	}
	if !c.HTTPConfig.HTTP2 {
		errs = append(errs, fmt.Errorf("web config %s: http_server_config.http2: false is not supported (gRPC needs HTTP/2)", path))
	}
	if c.TLSConfig.IsEnabled() {
		if _, err := web.ConfigToTLSConfig(&c.TLSConfig); err != nil {
			errs = append(errs, fmt.Errorf("web config %s: tls_server_config: %w", path, err))
		}
	}
	for user, hash := range c.Users {
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			errs = append(errs, fmt.Errorf("web config %s: basic_auth_users.%s: not a bcrypt hash: %w", path, user, err))
		}
	}
	for k := range c.HTTPConfig.Header {
		switch http2Canonical(k) {
		case "Authorization", "Set-Cookie", "Content-Type", "Content-Length", "Content-Encoding", "Retry-After", "Www-Authenticate":
			errs = append(errs, fmt.Errorf("web config %s: http_server_config.headers: %s may not be set", path, k))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func http2Canonical(k string) string {
	b := []byte(k)
	upper := true
	for i, c := range b {
		switch {
		case upper && c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !upper && c >= 'A' && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
		upper = c == '-'
	}
	return string(b)
}

// current returns the configuration, re-read if the file changed (checked
// at most once a second). A file that no longer loads keeps the last good
// configuration.
func (f *File) current() *web.Config {
	now := time.Now().UnixNano()
	last := f.lastCheck.Load()
	if now-last >= int64(time.Second) && f.lastCheck.CompareAndSwap(last, now) {
		f.mu.Lock()
		if fi, err := os.Stat(f.path); err == nil && !fi.ModTime().Equal(f.modTime) {
			if c, err := read(f.path); err == nil {
				f.cur.Store(c)
				f.modTime = fi.ModTime()
			}
		}
		f.mu.Unlock()
	}
	return f.cur.Load()
}

// TLSEnabled reports whether the file configures TLS.
func (f *File) TLSEnabled() bool {
	c := f.cur.Load()
	return c.TLSConfig.IsEnabled()
}

// RequiresClientCerts reports whether every client must present a
// certificate signed by the configured CA.
func (f *File) RequiresClientCerts() bool {
	return f.cur.Load().TLSConfig.ClientAuth == "RequireAndVerifyClientCert"
}

// TLSConfig returns the server's TLS configuration, or nil when the file
// configures none. The configuration and certificates are read again for
// every connection, as exporter-toolkit does; nextProtos are the ALPN
// protocols offered ("h2", "http/1.1").
func (f *File) TLSConfig(nextProtos []string) (*tls.Config, error) {
	c := f.cur.Load()
	if !c.TLSConfig.IsEnabled() {
		return nil, nil
	}
	cfg, err := web.ConfigToTLSConfig(&c.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("web config %s: %w", f.path, err)
	}
	cfg.NextProtos = nextProtos
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := read(f.path)
		if err != nil {
			// Keep serving with the last configuration that loaded.
			c = f.cur.Load()
		}
		cc, err := web.ConfigToTLSConfig(&c.TLSConfig)
		if err != nil {
			return nil, err
		}
		cc.NextProtos = nextProtos
		return cc, nil
	}
	return cfg, nil
}

// Users returns the basic-auth users (name -> bcrypt hash).
func (f *File) Users() map[string]string {
	c := f.current()
	if len(c.Users) == 0 {
		return nil
	}
	m := make(map[string]string, len(c.Users))
	for k, v := range c.Users {
		m[k] = string(v)
	}
	return m
}

// Headers returns the headers to set on every HTTP response.
func (f *File) Headers() map[string]string { return f.current().HTTPConfig.Header }

// RateLimit returns the file's request rate limit: one request per
// interval with burst; a zero interval means none.
func (f *File) RateLimit() (interval time.Duration, burst int) {
	c := f.cur.Load()
	return c.RateLimiterConfig.Interval, c.RateLimiterConfig.Burst
}
