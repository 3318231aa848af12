package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/levitated/levitated/pkg/tenant"
)

// ErrNoCredentials is returned when a request carries no credential.
var ErrNoCredentials = errors.New("auth: no credentials: send Authorization: Bearer <token>, or the token as the basic-auth password")

// ErrBadCredentials is returned for a credential that is malformed,
// unknown, revoked or wrong; which of these is not said.
var ErrBadCredentials = errors.New("auth: invalid credentials")

// Credential is what a request presents.
type Credential struct {
	// Token is a bearer token, or a basic-auth password of a token's form.
	Token string
	// User and Password are basic-auth credentials that are not a token.
	User, Password string
}

// Empty reports whether the request presented nothing.
func (c Credential) Empty() bool { return c.Token == "" && c.User == "" && c.Password == "" }

// ParseAuthorization reads an Authorization header value (or gRPC
// "authorization" metadata): "Bearer <token>" or "Basic <base64>". A
// basic-auth password of a token's form is the token; the user name is
// then ignored (Prometheus' remote_write.basic_auth and Grafana need one).
// Anything else is a malformed credential, reported as a bad one.
func ParseAuthorization(v string) (Credential, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return Credential{}, nil
	}
	scheme, rest, _ := strings.Cut(v, " ")
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		if rest == "" {
			return Credential{}, ErrBadCredentials
		}
		return Credential{Token: rest}, nil
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return Credential{}, ErrBadCredentials
		}
		user, pass, ok := strings.Cut(string(b), ":")
		if !ok {
			return Credential{}, ErrBadCredentials
		}
		if LooksLikeToken(pass) {
			return Credential{Token: pass}, nil
		}
		return Credential{User: user, Password: pass}, nil
	default:
		return Credential{}, ErrBadCredentials
	}
}

// FromHTTP reads the credential of an HTTP request: the Authorization
// header, or X-LAST9-API-TOKEN ("Bearer <token>"), which Last9's clients
// send.
func FromHTTP(h http.Header) (Credential, error) {
	if v := h.Get("Authorization"); v != "" {
		return ParseAuthorization(v)
	}
	if v := h.Get("X-Last9-Api-Token"); v != "" {
		return ParseAuthorization(v)
	}
	return Credential{}, nil
}

// Options configure an Authenticator.
type Options struct {
	// TokenFile is the token file (see Store); it need not exist.
	TokenFile string
	// Users returns the basic-auth users of web.yml (user name -> bcrypt
	// hash), read for each check so that changes to the file apply; nil
	// means none.
	Users func() map[string]string
	// ReloadInterval is how often at most the token file is checked for
	// changes. Default 1s.
	ReloadInterval time.Duration
	// Logger may be nil.
	Logger *slog.Logger
}

// Authenticator checks credentials against the token file and the web.yml
// users.
type Authenticator struct {
	opts   Options
	logger *slog.Logger

	mu        sync.Mutex // serialises reloads
	index     atomic.Pointer[tokenIndex]
	lastCheck atomic.Int64 // unix nanoseconds
	// refused is the state of the token file last refused (under mu), so
	// that a file left broken is reported once, not at every check.
	refused *fileState

	// dummy stands in for an unknown token id, so that it costs what a
	// known one does; no token hashes to it.
	dummy tokenEntry

	bcryptMu sync.Mutex // bcrypt runs one at a time, as in exporter-toolkit
	userMu   sync.Mutex
	users    map[[sha256.Size]byte]bool // cached basic-auth results
}

type tokenIndex struct {
	state  fileState
	byID   map[string]*tokenEntry
	tokens int // records, revoked ones included
}

type tokenEntry struct {
	hash    [sha256.Size]byte
	tenant  string
	scopes  []Scope
	id      string
	revoked bool
}

// fakeBcryptHash is checked for unknown users (exporter-toolkit's, of
// "fakepassword"), so that they cost what a known user does.
const fakeBcryptHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"

// maxCachedUsers bounds the basic-auth cache; a full cache is emptied.
const maxCachedUsers = 1024

// NewAuthenticator loads the token file.
func NewAuthenticator(opts Options) (*Authenticator, error) {
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = time.Second
	}
	a := &Authenticator{opts: opts, logger: opts.Logger, users: map[[sha256.Size]byte]bool{}}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if _, err := rand.Read(a.dummy.hash[:]); err != nil {
		return nil, err
	}
	a.dummy.revoked = true
	if err := a.reload(); err != nil {
		return nil, err
	}
	a.lastCheck.Store(time.Now().UnixNano())
	return a, nil
}

// reload reads the token file if it changed.
func (a *Authenticator) reload() error {
	if a.opts.TokenFile == "" {
		if a.index.Load() == nil {
			a.index.Store(&tokenIndex{byID: map[string]*tokenEntry{}})
		}
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := statFile(a.opts.TokenFile)
	if err != nil {
		return err
	}
	cur := a.index.Load()
	if cur != nil && cur.state == st || a.refused != nil && *a.refused == st {
		return nil
	}
	f, st, err := readTokenFile(a.opts.TokenFile)
	if err == nil && cur != nil && cur.tokens > 0 && len(f.Tokens) == 0 {
		// Deleting or emptying the file would turn authentication off on a
		// loopback listener: every caller would act for the default tenant
		// with every scope. That takes a restart, never a reload.
		what := "has no tokens"
		if !st.exists {
			what = "is gone"
		}
		err = fmt.Errorf("token file %s %s; the %d tokens read before stay in force (restart levitated to serve without tokens)", a.opts.TokenFile, what, cur.tokens)
	}
	if err != nil {
		refused := st
		if refused == (fileState{}) {
			refused, _ = statFile(a.opts.TokenFile)
		}
		a.refused = &refused
		return err
	}
	a.refused = nil
	idx := &tokenIndex{state: st, byID: make(map[string]*tokenEntry, len(f.Tokens)), tokens: len(f.Tokens)}
	for _, t := range f.Tokens {
		e := &tokenEntry{tenant: t.Tenant, scopes: slices.Clone(t.Scopes), id: t.ID, revoked: t.Revoked()}
		h, _ := hex.DecodeString(t.SHA256) // checked by readTokenFile
		copy(e.hash[:], h)
		idx.byID[t.ID] = e
	}
	a.index.Store(idx)
	return nil
}

// maybeReload re-reads the token file when it changed, at most once per
// ReloadInterval. A file that cannot be read, or that no longer holds any
// token (deleted, emptied) after tokens were read, keeps the tokens loaded
// before, and is logged at error level once per version of the file.
func (a *Authenticator) maybeReload() {
	now := time.Now().UnixNano()
	last := a.lastCheck.Load()
	if now-last < int64(a.opts.ReloadInterval) || !a.lastCheck.CompareAndSwap(last, now) {
		return
	}
	if err := a.reload(); err != nil {
		a.logger.Error("token file not reloaded; the tokens read before stay in force", "file", a.opts.TokenFile, "err", err)
	}
}

// Enabled reports whether credentials are configured: a token file with at
// least one token (revoked ones count: revoking every token does not turn
// authentication off) or a web.yml basic-auth user.
func (a *Authenticator) Enabled() bool {
	a.maybeReload()
	if a.index.Load().tokens > 0 {
		return true
	}
	return a.opts.Users != nil && len(a.opts.Users()) > 0
}

// Authenticate returns the principal of c, ErrNoCredentials for an empty
// credential, or ErrBadCredentials.
func (a *Authenticator) Authenticate(_ context.Context, c Credential) (Principal, error) {
	switch {
	case c.Token != "":
		return a.token(c.Token)
	case c.User != "" || c.Password != "":
		return a.user(c.User, c.Password)
	default:
		return Principal{}, ErrNoCredentials
	}
}

func (a *Authenticator) token(tok string) (Principal, error) {
	a.maybeReload()
	idx := a.index.Load()
	id, wellFormed := tokenID(tok)
	e := idx.byID[id]
	if !wellFormed || e == nil {
		e = &a.dummy
	}
	h := hashToken(tok)
	match := subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1
	if !match || e.revoked {
		return Principal{}, ErrBadCredentials
	}
	return Principal{Tenant: e.tenant, Scopes: e.scopes, Subject: "token " + e.id}, nil
}

// user checks a web.yml basic-auth user. Users act for the default tenant
// with every scope, as a web.yml user may do anything in Prometheus.
func (a *Authenticator) user(name, password string) (Principal, error) {
	var users map[string]string
	if a.opts.Users != nil {
		users = a.opts.Users()
	}
	hash, known := users[name]
	if !known {
		hash = fakeBcryptHash
	}
	key := sha256.Sum256([]byte(name + "\x00" + hash + "\x00" + password))
	a.userMu.Lock()
	ok, cached := a.users[key]
	a.userMu.Unlock()
	if !cached {
		a.bcryptMu.Lock()
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		a.bcryptMu.Unlock()
		ok = known && err == nil
		a.userMu.Lock()
		if len(a.users) >= maxCachedUsers {
			clear(a.users)
		}
		a.users[key] = ok
		a.userMu.Unlock()
	}
	if !ok || !known {
		return Principal{}, ErrBadCredentials
	}
	return Principal{Tenant: tenant.Default, Scopes: AllScopes, Subject: "user " + name}, nil
}
