package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/store"
)

// EnsureToken makes sure the admin token secret, made elsewhere (keygate
// tokens new) and given to keygate in a file, has a record: it stores one
// with name and scopes if none has the token's hash, and otherwise leaves
// the record as it is, revoked or with other scopes (a token's scopes
// change by revoking it and giving keygate a new one). It returns the
// record's view and whether this call stored it.
//
// The record's id is derived from the token's hash, so that of several
// keygates starting at once with the same token one stores the record
// and tells the Recorder, and the others find it. A malformed secret is
// refused (Invalid, field "token") without quoting it.
func (s *Service) EnsureToken(ctx context.Context, by Actor, name, secret string, scopes []string) (TokenView, bool, error) {
	if err := tokenFormat.Check(secret); err != nil {
		return TokenView{}, false, invalid("token", "is not a well-formed admin token, %s and 42 letters or digits ending in a checksum (%v); make one with keygate tokens new", TokenPrefix, err)
	}
	if err := checkName(name); err != nil {
		return TokenView{}, false, err
	}
	scopes, err := CheckScopes(scopes)
	if err != nil {
		return TokenView{}, false, err
	}
	tokens, err := s.st.Tokens(ctx)
	if err != nil {
		return TokenView{}, false, err
	}
	hash := apikey.Hash(secret)
	t := &store.Token{ID: tokenIDOf(hash), Hash: hash, Name: name, Scopes: scopes, CreatedAt: s.now().UTC()}
	got, created, err := tokens.Ensure(ctx, t)
	if err != nil {
		return TokenView{}, false, err
	}
	v := ViewToken(got)
	if !created {
		return v, false, nil
	}
	return v, true, s.record(ctx, Change{Actor: by, Action: ActionTokenCreate, TargetKind: "token", TargetID: v.ID, After: v})
}

// tokenIDOf derives a token's id from its hash: "tok_" and 20 hex
// characters of a hash of the hash, so the id gives nothing of the
// stored hash away.
func tokenIDOf(hash string) string {
	sum := sha256.Sum256([]byte("keygate admin token id\x00" + hash))
	return "tok_" + hex.EncodeToString(sum[:10])
}
