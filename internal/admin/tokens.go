package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/store"
)

// Admin token scopes: read allows every read; keys allows key changes,
// balances balance changes, and each every read too.
const (
	ScopeRead     = store.TokenScopeRead
	ScopeKeys     = store.TokenScopeKeys
	ScopeBalances = store.TokenScopeBalances
)

// TokenPrefix starts every admin token.
const TokenPrefix = "kga_"

// tokenFormat is the admin tokens' format: the prefix, 36 random base62
// characters (214 bits) and a 6-character checksum, so that typos and
// guesses are refused without a store lookup.
var tokenFormat = apikey.Format{Prefixes: []string{TokenPrefix}, Length: 46, Checksum: true}

// TouchEvery is how often a token's last use is written, at most.
const TouchEvery = time.Minute

// TokenView is an admin token as shown: its record without the hash.
type TokenView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name,omitempty"`
	Scopes     []string   `json:"scopes"`
	Status     string     `json:"status"` // "active" or "revoked"
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// ViewToken is t as shown.
func ViewToken(t *store.Token) TokenView {
	v := TokenView{ID: t.ID, Name: t.Name, Scopes: t.Scopes, Status: StatusActive, CreatedAt: t.CreatedAt,
		LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
	if t.RevokedAt != nil {
		v.Status = StatusRevoked
	}
	return v
}

// CheckScopes checks admin token scopes, dropping repeats.
func CheckScopes(scopes []string) ([]string, error) {
	var out []string
	for _, sc := range scopes {
		if !store.ValidTokenScope(sc) {
			return nil, invalid("scopes", "%q is not read, keys or balances", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, invalid("scopes", "give read, keys or balances")
	}
	return out, nil
}

// Allows reports whether a token with scopes may do what needs scope
// need: every scope reads.
func Allows(scopes []string, need string) bool {
	return need == ScopeRead && len(scopes) > 0 || slices.Contains(scopes, need)
}

// CreateToken mints an admin token and stores its record. The token
// itself is in the result and nowhere else: only its hash is stored.
func (s *Service) CreateToken(ctx context.Context, by Actor, name string, scopes []string) (TokenView, string, error) {
	if err := checkName(name); err != nil {
		return TokenView{}, "", err
	}
	scopes, err := CheckScopes(scopes)
	if err != nil {
		return TokenView{}, "", err
	}
	tokens, err := s.st.Tokens(ctx)
	if err != nil {
		return TokenView{}, "", err
	}
	secret, err := NewToken()
	if err != nil {
		return TokenView{}, "", err
	}
	t := &store.Token{Hash: apikey.Hash(secret), Name: name, Scopes: scopes, CreatedAt: s.now().UTC()}
	if t.ID, err = apikey.NewPrefixedID("tok_"); err != nil {
		return TokenView{}, "", fmt.Errorf("mint token id: %w", err)
	}
	if err := tokens.Create(ctx, t); err != nil {
		return TokenView{}, "", err
	}
	v := ViewToken(t)
	return v, secret, s.record(ctx, Change{Actor: by, Action: ActionTokenCreate, TargetKind: "token", TargetID: t.ID, After: v})
}

// NewToken mints an admin token and stores nothing.
func NewToken() (string, error) {
	secret, err := tokenFormat.Mint(TokenPrefix)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return secret, nil
}

// ListTokens returns every admin token, oldest first.
func (s *Service) ListTokens(ctx context.Context) ([]TokenView, error) {
	tokens, err := s.st.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := tokens.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TokenView, 0, len(ts))
	for _, t := range ts {
		out = append(out, ViewToken(t))
	}
	slices.SortFunc(out, func(a, b TokenView) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

var errTokenRevoked = errors.New("already revoked")

// RevokeToken revokes admin token id at once. A token revoked already is
// left as it is, and reported so (already true).
func (s *Service) RevokeToken(ctx context.Context, by Actor, id string) (v TokenView, already bool, err error) {
	tokens, err := s.st.Tokens(ctx)
	if err != nil {
		return TokenView{}, false, err
	}
	var prior *store.Token
	var before TokenView
	now := s.now().UTC()
	t, err := tokens.Update(ctx, id, func(t *store.Token) error {
		if t.RevokedAt != nil {
			prior = t
			return errTokenRevoked
		}
		before = ViewToken(t)
		t.RevokedAt = &now
		return nil
	})
	switch {
	case prior != nil:
		return ViewToken(prior), true, nil
	case errors.Is(err, store.ErrNotFound):
		return TokenView{}, false, notFound(CodeTokenNotFound, "token", id, id)
	case err != nil:
		return TokenView{}, false, err
	}
	v = ViewToken(t)
	return v, false, s.record(ctx, Change{Actor: by, Action: ActionTokenRevoke, TargetKind: "token", TargetID: id, Before: before, After: v})
}

// ErrBadToken is an admin token that is malformed, unknown or revoked.
var ErrBadToken = errors.New("invalid admin token")

// Authenticate returns the record of the admin token secret, or
// ErrBadToken. A token of the wrong form is refused without a store
// lookup; a known one is compared in constant time, and its last use is
// written at most once every TouchEvery.
func (s *Service) Authenticate(ctx context.Context, secret string) (*store.Token, error) {
	if tokenFormat.Check(secret) != nil {
		return nil, ErrBadToken
	}
	tokens, err := s.st.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	hash := apikey.Hash(secret)
	t, rev, err := tokens.ByHash(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalidRecord):
		return nil, ErrBadToken
	case err != nil:
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 || t.RevokedAt != nil {
		return nil, ErrBadToken
	}
	now := s.now()
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) >= TouchEvery {
		// Of concurrent requests, one writes; the others find the
		// record changed and leave it.
		if _, err := tokens.Touch(ctx, t, rev, now); err != nil {
			return t, fmt.Errorf("%w: %w", errTouch, err)
		}
	}
	return t, nil
}

// errTouch: the token is good, but its last use was not written.
var errTouch = errors.New("token last use not written")

// TouchFailed reports whether an error of Authenticate only says that
// the token's last use was not written: the token is good.
func TouchFailed(err error) bool { return errors.Is(err, errTouch) }
