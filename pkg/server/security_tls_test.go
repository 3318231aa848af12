package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files in dir.
type pki struct {
	dir        string
	pool       *x509.CertPool
	clientCert tls.Certificate
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return ca, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, usage x509.ExtKeyUsage, ips ...net.IP) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "levitated-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCA(t, "levitated test CA")
	write := func(name string, b []byte) { require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o600)) }
	write("ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	sc, sk := issue(t, ca, caKey, 2, x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	write("server.crt", sc)
	write("server.key", sk)
	cc, ck := issue(t, ca, caKey, 3, x509.ExtKeyUsageClientAuth)
	cert, err := tls.X509KeyPair(cc, ck)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{dir: dir, pool: pool, clientCert: cert}
}

// webConfig writes a web.yml into the PKI's directory.
func (p *pki) webConfig(t *testing.T, yaml string) string {
	t.Helper()
	f := filepath.Join(p.dir, "web.yml")
	require.NoError(t, os.WriteFile(f, []byte(yaml), 0o600))
	return f
}

func (p *pki) client(cfg *tls.Config, http2 bool) *http.Client {
	if cfg.RootCAs == nil {
		cfg.RootCAs = p.pool
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: http2}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func httpsURL(srv *servertest.Server) string { return "https://" + srv.Addr().String() }

const serverTLS = `tls_server_config:
  cert_file: server.crt
  key_file: server.key
`

// TestTLS serves HTTP/1.1, HTTP/2 and gRPC over TLS from web.yml, and
// refuses plaintext and TLS below 1.2.
func TestTLS(t *testing.T) {
	p := newPKI(t)
	cfg := p.webConfig(t, serverTLS)
	srv := servertest.Start(t, func(o *serverOptions) { o.Security.WebConfigFile = cfg })

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, h2 := range []bool{false, true} {
			resp, err := p.client(&tls.Config{MinVersion: v, MaxVersion: v}, h2).Get(httpsURL(srv) + "/-/ready")
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, v, resp.TLS.Version)
			if h2 {
				require.Equal(t, 2, resp.ProtoMajor)
			}
		}
	}

	// TLS 1.0 and 1.1 are refused in the handshake.
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		_, err := p.client(&tls.Config{MinVersion: v, MaxVersion: v}, false).Get(httpsURL(srv) + "/-/ready")
		require.Error(t, err)
		require.Contains(t, err.Error(), "protocol version")
	}

	// Plaintext HTTP gets Go's 400 for an HTTP request to an HTTPS server,
	// and plaintext gRPC does not connect.
	resp, err := http.Get("http://" + srv.Addr().String() + "/-/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	plain, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = levitatedv1.NewEventServiceClient(plain).ListEvents(ctx, &levitatedv1.ListEventsRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)

	// gRPC over TLS (h2 by ALPN).
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12})))
	require.NoError(t, err)
	defer conn.Close()
	_, err = levitatedv1.NewEventServiceClient(conn).ListEvents(context.Background(), &levitatedv1.ListEventsRequest{})
	require.NoError(t, err)
}

// TestMutualTLS requires client certificates signed by client_ca_file,
// on HTTP and gRPC.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	cfg := p.webConfig(t, serverTLS+"  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n")
	srv := servertest.Start(t, func(o *serverOptions) { o.Security.WebConfigFile = cfg })

	resp, err := p.client(&tls.Config{Certificates: []tls.Certificate{p.clientCert}}, true).Get(httpsURL(srv) + "/-/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// No certificate, or one from another CA: no request gets through.
	other := newPKI(t)
	for name, certs := range map[string][]tls.Certificate{"none": nil, "other CA": {other.clientCert}} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			resp, err := p.client(&tls.Config{Certificates: certs, MinVersion: v, MaxVersion: v}, false).Get(httpsURL(srv) + "/-/ready")
			if err == nil {
				resp.Body.Close()
			}
			require.Error(t, err, "client certificate %s, TLS %x", name, v)
		}
		conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: certs})))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = levitatedv1.NewEventServiceClient(conn).ListEvents(ctx, &levitatedv1.ListEventsRequest{})
		cancel()
		conn.Close()
		require.Equal(t, codes.Unavailable, status.Code(err), "gRPC with client certificate %s: %v", name, err)
	}

	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.clientCert}})))
	require.NoError(t, err)
	defer conn.Close()
	_, err = levitatedv1.NewEventServiceClient(conn).ListEvents(context.Background(), &levitatedv1.ListEventsRequest{})
	require.NoError(t, err)
}

// TestWebConfigRejected refuses web.yml settings levitated cannot honour,
// naming the setting.
func TestWebConfigRejected(t *testing.T) {
	p := newPKI(t)
	for yaml, want := range map[string]string{
		serverTLS + "  min_version: TLS11\n":                "min_version: levitated needs TLS 1.2 or later",
		serverTLS + "http_server_config:\n  http2: false\n": "http2: false is not supported",
		serverTLS + "  client_auth_type: Bogus\n":           "invalid ClientAuth",
		"basic_auth_users:\n  alice: plaintext\n":           "basic_auth_users.alice: not a bcrypt hash",
		"tls_server_config:\n  cert_file: missing.crt\n":    "missing one of key or key_file",
		"no_such_key: 1\n":                                  "no_such_key",
	} {
		o := server.DefaultOptions()
		o.ListenAddress = "127.0.0.1:0"
		o.DataDir = t.TempDir()
		o.Security.WebConfigFile = p.webConfig(t, yaml)
		_, err := server.New(o)
		require.Error(t, err, yaml)
		require.Contains(t, err.Error(), want)
	}
}

// TestBasicAuthUsers accepts web.yml's bcrypt users (as the default
// tenant, every scope) beside tokens.
func TestBasicAuthUsers(t *testing.T) {
	p := newPKI(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	cfg := p.webConfig(t, "basic_auth_users:\n  alice: "+string(hash)+"\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n")
	ts := newTokenSet(t)
	tok := ts.create(t, "team-a", auth.ScopeRead)
	srv := startWithTokens(t, ts, nil, func(o *serverOptions) { o.Security.WebConfigFile = cfg })

	q := authReq{path: "/api/v1/query?query=1"}
	r := sendAs(t, srv.URL, basicAuth("alice", "s3cret"), q)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, "deny", r.header.Get("X-Frame-Options"))
	for _, h := range []http.Header{basicAuth("alice", "wrong"), basicAuth("bob", "s3cret"), basicAuth("alice", "")} {
		r = sendAs(t, srv.URL, h, q)
		require.Equal(t, http.StatusUnauthorized, r.code, r.body)
	}
	r = sendAs(t, srv.URL, basicAuth("anyone", tok), q)
	require.Equal(t, http.StatusOK, r.code, r.body)
}

// TestLoopbackOnlyWithoutCredentials refuses a non-loopback address while
// nothing authenticates, and names the ways out.
func TestLoopbackOnlyWithoutCredentials(t *testing.T) {
	start := func(f func(*server.Options)) error {
		o := server.DefaultOptions()
		o.ListenAddress = "0.0.0.0:0"
		o.DataDir = t.TempDir()
		if f != nil {
			f(&o)
		}
		s, err := server.New(o)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return s.Run(ctx)
	}
	err := start(nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "without authentication: no API token exists")
	require.Contains(t, err.Error(), "levitated token create")
	require.Contains(t, err.Error(), server.InsecureFlag)

	require.NoError(t, start(func(o *server.Options) { o.Security.InsecureAllowUnauthenticatedRemoteAccess = true }))
	ts := newTokenSet(t)
	ts.create(t, "team-a", auth.ScopeRead)
	require.NoError(t, start(func(o *server.Options) { o.Security.TokenFile = ts.file }))
	p := newPKI(t)
	mtls := p.webConfig(t, serverTLS+"  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n")
	require.NoError(t, start(func(o *server.Options) { o.Security.WebConfigFile = mtls }))
	require.NoError(t, start(func(o *server.Options) { o.Security.TrustedProxy = true }))

	// On loopback, without credentials, everything works as before.
	srv := servertest.Start(t)
	r := get(t, srv.URL, "/api/v1/query", nil)
	require.NotEqual(t, http.StatusUnauthorized, r.code)
	require.True(t, strings.HasPrefix(srv.URL, "http://127.0.0.1:"))
}
