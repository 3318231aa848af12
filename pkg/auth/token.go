package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

const (
	tokenPrefix    = "lev_"
	tokenIDBytes   = 8
	tokenSecBytes  = 32
	tokenIDHexLen  = 2 * tokenIDBytes
	tokenSecHexLen = 2 * tokenSecBytes
	// TokenLength is the length of every token.
	TokenLength = len(tokenPrefix) + tokenIDHexLen + 1 + tokenSecHexLen
)

// newToken returns a fresh token and its id, read from r (crypto/rand when
// nil).
func newToken(r io.Reader) (id, token string, err error) {
	if r == nil {
		r = rand.Reader
	}
	var b [tokenIDBytes + tokenSecBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	id = hex.EncodeToString(b[:tokenIDBytes])
	return id, tokenPrefix + id + "_" + hex.EncodeToString(b[tokenIDBytes:]), nil
}

// LooksLikeToken reports whether s has the shape of a levitated token (it
// says nothing about whether it is valid). A basic-auth password of this
// shape is checked as a token, any other as a web.yml user's password.
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// tokenID returns the id part of a token, or false if s is not of the
// token's form.
func tokenID(s string) (string, bool) {
	if len(s) != TokenLength || !strings.HasPrefix(s, tokenPrefix) || s[len(tokenPrefix)+tokenIDHexLen] != '_' {
		return "", false
	}
	id := s[len(tokenPrefix) : len(tokenPrefix)+tokenIDHexLen]
	if !isLowerHex(id) || !isLowerHex(s[len(tokenPrefix)+tokenIDHexLen+1:]) {
		return "", false
	}
	return id, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// hashToken is the SHA-256 of the whole token.
func hashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }
