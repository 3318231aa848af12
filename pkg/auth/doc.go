// Package auth decides who a request acts for: the tenant and the scopes of
// the API token it presents, or of a basic-auth user of a Prometheus
// web.yml.
//
// # Tokens
//
// A token is "lev_" + a 16-hex-digit id + "_" + 64 hex digits of secret
// (32 random bytes). It is bound to one tenant and a set of scopes
// (read, write, events:write, analysis, admin) and is shown once, when it is
// created. What is kept is its SHA-256: tokens are high-entropy random
// strings, so a fast hash is enough (bcrypt is for the human-chosen
// passwords of web.yml).
//
// # Where tokens live
//
// Tokens are kept in the file TokenFileName in the data directory, a JSON
// document of the token records (id, tenant, scopes, description, creation
// and revocation times, SHA-256 hex), mode 0600. It is not in the Pebble
// database, so that `levitated token create|list|revoke` works whether or
// not the server runs (Pebble locks its directory against a second
// process). Writers take an advisory lock (TokenFileName + ".lock"), write
// a temporary file, fsync it and rename it over the old one, so a reader
// sees either the old file or the new one. The server re-reads the file
// when it changes, checking at most once per ReloadInterval (one second by
// default): a token created or revoked while the server runs counts from
// the next request after that.
//
// Revoked tokens stay in the file (listed as revoked) and are refused.
//
// # Verification
//
// Every credential costs the same whether it is unknown, malformed, revoked
// or wrong: the presented token is hashed, the record is found by the id in
// the token (a record that does not exist is replaced by one whose hash
// nothing matches), and the hashes are compared with
// crypto/subtle.ConstantTimeCompare. Basic-auth users of web.yml are
// checked with bcrypt, an unknown user against a fixed hash, with results
// cached as Prometheus' exporter-toolkit does. Nothing here logs a token or
// a password.
package auth
