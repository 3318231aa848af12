package auth

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/levitated/levitated/pkg/tenant"
)

// TokenFileName is the name of the token file in the data directory.
const TokenFileName = "tokens.json"

// tokenFileVersion is written in every token file and checked on read.
const tokenFileVersion = 1

// ErrTokenNotFound is returned by Revoke for an id no token has.
var ErrTokenNotFound = errors.New("auth: no token with this id")

// Token is the record of a token; it holds the token's hash, never the
// token.
type Token struct {
	ID          string     `json:"id"`
	Tenant      string     `json:"tenant"`
	Scopes      []Scope    `json:"scopes"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// SHA256 is the hex SHA-256 of the whole token.
	SHA256 string `json:"sha256"`
}

// Revoked reports whether the token has been revoked.
func (t Token) Revoked() bool { return t.RevokedAt != nil }

type tokenFile struct {
	Version int     `json:"version"`
	Tokens  []Token `json:"tokens"`
}

// Store reads and changes the token file. Several processes may use it at
// once: changes are serialised by an advisory file lock and replace the
// file atomically.
type Store struct {
	path string
	// rand is the source of new tokens (crypto/rand when nil).
	rand io.Reader
}

// NewStore returns the store of the token file at path (usually
// filepath.Join(dataDir, TokenFileName)).
func NewStore(path string) *Store { return &Store{path: path} }

// Path is the token file's path.
func (s *Store) Path() string { return s.path }

// Create makes a token for tenant with scopes and returns it (the only time
// it is seen) with its record.
func (s *Store) Create(tenantID string, scopes []Scope, description string, now time.Time) (string, Token, error) {
	if err := tenant.Validate(tenantID); err != nil {
		return "", Token{}, fmt.Errorf("create token: %w", err)
	}
	if len(scopes) == 0 {
		return "", Token{}, errors.New("create token: no scope given")
	}
	for _, sc := range scopes {
		if !slices.Contains(AllScopes, sc) {
			return "", Token{}, fmt.Errorf("create token: unknown scope %q", sc)
		}
	}
	var (
		token string
		rec   Token
	)
	err := s.update(func(f *tokenFile) error {
		for {
			id, tok, err := newToken(s.rand)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(f.Tokens, func(t Token) bool { return t.ID == id }) {
				continue // 2^-64; draw again
			}
			h := hashToken(tok)
			rec = Token{
				ID:          id,
				Tenant:      tenantID,
				Scopes:      slices.Clone(scopes),
				Description: description,
				CreatedAt:   now.UTC().Truncate(time.Second),
				SHA256:      hex.EncodeToString(h[:]),
			}
			token = tok
			f.Tokens = append(f.Tokens, rec)
			return nil
		}
	})
	if err != nil {
		return "", Token{}, err
	}
	return token, rec, nil
}

// ErrTokenConflict is returned by Import for a token whose id is taken by
// another token, or by the same token for another tenant or scopes.
var ErrTokenConflict = errors.New("auth: a different token has this id")

// Import stores a token made elsewhere (kept in a secret store, say), so
// that deployments can provision known tokens. It must have the form of a
// levitated token. Importing the same token again with the same tenant
// and scopes changes nothing and reports created false.
func (s *Store) Import(token, tenantID string, scopes []Scope, description string, now time.Time) (rec Token, created bool, err error) {
	id, ok := tokenID(token)
	if !ok {
		return Token{}, false, fmt.Errorf("import token: not a levitated token (lev_<16 hex>_<64 hex>, as levitated token create prints)")
	}
	if err := tenant.Validate(tenantID); err != nil {
		return Token{}, false, fmt.Errorf("import token: %w", err)
	}
	if len(scopes) == 0 {
		return Token{}, false, errors.New("import token: no scope given")
	}
	h := hashToken(token)
	sum := hex.EncodeToString(h[:])
	err = s.update(func(f *tokenFile) error {
		if i := slices.IndexFunc(f.Tokens, func(t Token) bool { return t.ID == id }); i >= 0 {
			t := f.Tokens[i]
			if t.SHA256 != sum || t.Tenant != tenantID || !slices.Equal(t.Scopes, scopes) {
				return fmt.Errorf("import token %s: %w (tenant %q, scopes %s)", id, ErrTokenConflict, t.Tenant, joinScopes(t.Scopes))
			}
			if t.Revoked() {
				return fmt.Errorf("import token %s: it was revoked at %s", id, t.RevokedAt.Format(time.RFC3339))
			}
			rec = t
			return nil
		}
		rec = Token{ID: id, Tenant: tenantID, Scopes: slices.Clone(scopes), Description: description,
			CreatedAt: now.UTC().Truncate(time.Second), SHA256: sum}
		f.Tokens = append(f.Tokens, rec)
		created = true
		return nil
	})
	if err != nil {
		return Token{}, false, err
	}
	return rec, created, nil
}

// Revoke marks the token with id as revoked; revoking twice keeps the first
// time. It returns the record.
func (s *Store) Revoke(id string, now time.Time) (Token, error) {
	var rec Token
	err := s.update(func(f *tokenFile) error {
		i := slices.IndexFunc(f.Tokens, func(t Token) bool { return t.ID == id })
		if i < 0 {
			return fmt.Errorf("revoke token %q: %w", id, ErrTokenNotFound)
		}
		if f.Tokens[i].RevokedAt == nil {
			at := now.UTC().Truncate(time.Second)
			f.Tokens[i].RevokedAt = &at
		}
		rec = f.Tokens[i]
		return nil
	})
	return rec, err
}

// List returns every token record, revoked ones included, oldest first.
func (s *Store) List() ([]Token, error) {
	f, _, err := readTokenFile(s.path)
	if err != nil {
		return nil, err
	}
	return f.Tokens, nil
}

// update applies fn to the file under the lock and writes the result.
func (s *Store) update(fn func(*tokenFile) error) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory of the token file: %w", err)
	}
	lock, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open token file lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock token file: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	f, _, err := readTokenFile(s.path)
	if err != nil {
		return err
	}
	if err := fn(&f); err != nil {
		return err
	}
	f.Version = tokenFileVersion
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode token file: %w", err)
	}
	return writeFileAtomic(s.path, append(b, '\n'))
}

// readTokenFile reads the token file; a missing file has no tokens. It
// also returns the file's state, for change detection.
func readTokenFile(path string) (tokenFile, fileState, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return tokenFile{Version: tokenFileVersion}, fileState{}, nil
	}
	if err != nil {
		return tokenFile{}, fileState{}, fmt.Errorf("open token file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return tokenFile{}, fileState{}, fmt.Errorf("stat token file: %w", err)
	}
	b, err := io.ReadAll(fh)
	if err != nil {
		return tokenFile{}, fileState{}, fmt.Errorf("read token file: %w", err)
	}
	var f tokenFile
	if err := json.Unmarshal(b, &f); err != nil {
		return tokenFile{}, fileState{}, fmt.Errorf("token file %s: %w", path, err)
	}
	if f.Version != tokenFileVersion {
		return tokenFile{}, fileState{}, fmt.Errorf("token file %s: version %d, this levitated reads version %d", path, f.Version, tokenFileVersion)
	}
	for i, t := range f.Tokens {
		h, err := hex.DecodeString(t.SHA256)
		if err != nil || len(h) != 32 || len(t.ID) != tokenIDHexLen || t.Tenant == "" {
			return tokenFile{}, fileState{}, fmt.Errorf("token file %s: token %d (id %q) is malformed", path, i, t.ID)
		}
	}
	return f, stateOf(fi), nil
}

// fileState identifies a version of the token file.
type fileState struct {
	exists  bool
	modTime time.Time
	size    int64
	inode   uint64
}

func stateOf(fi os.FileInfo) fileState {
	st := fileState{exists: true, modTime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.inode = sys.Ino
	}
	return st
}

func statFile(path string) (fileState, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, err
	}
	return stateOf(fi), nil
}

// writeFileAtomic replaces path with b: a temporary file in the same
// directory, fsynced, renamed over path, and the directory fsynced.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync token file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace token file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync data directory: %w", err)
	}
	return nil
}
