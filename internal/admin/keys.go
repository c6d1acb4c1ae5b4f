package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// CreateKeyInput is what a new key is made of.
type CreateKeyInput struct {
	AccountID  string
	Name       string
	Env        string   // "" is live
	Scopes     []string // nil: * (every route)
	RateLimit  RateLimit
	Models     []string // nil: any model
	TokenLimit *store.TokenLimit
	Budget     *Budget
	Expiry     Expiry
	AllowIPs   []string
}

// Check checks what can be checked without the store, filling in the
// defaults (env live, scope *).
func (in *CreateKeyInput) Check(now time.Time) error {
	if in.AccountID == "" {
		return invalid("account_id", "is required")
	}
	if err := CheckAccountID("account_id", in.AccountID); err != nil {
		return err
	}
	if err := checkName(in.Name); err != nil {
		return err
	}
	if in.Env == "" {
		in.Env = store.EnvLive
	}
	if err := checkEnv(in.Env); err != nil {
		return err
	}
	if in.Scopes == nil {
		in.Scopes = []string{"*"}
	}
	var err error
	if in.Scopes, err = normalScopes(in.Scopes); err != nil {
		return err
	}
	if err := in.RateLimit.check(); err != nil {
		return err
	}
	if in.Models != nil {
		if err := checkModels(in.Models); err != nil {
			return err
		}
	}
	if in.TokenLimit != nil {
		if err := checkTokenLimit(in.TokenLimit); err != nil {
			return err
		}
	}
	if in.Budget != nil {
		if err := in.Budget.checkForm(); err != nil {
			return err
		}
	}
	if err := in.Expiry.check(now); err != nil {
		return err
	}
	in.AllowIPs, err = normalAllowIPs(in.AllowIPs)
	return err
}

// CreateKey mints a key and stores its record. The key itself is in the
// result, and nowhere else: only its hash is stored.
func (s *Service) CreateKey(ctx context.Context, by Actor, in CreateKeyInput) (NewKey, error) {
	now := s.now().UTC()
	if err := in.Check(now); err != nil {
		return NewKey{}, err
	}
	if err := s.checkAccount("account_id", in.AccountID); err != nil {
		return NewKey{}, err
	}
	k := &store.Key{AccountID: in.AccountID, Name: in.Name, Env: in.Env, Scopes: in.Scopes, CreatedAt: now,
		Models: slices.Clone(in.Models), ExpiresAt: in.Expiry.at(now), AllowIPs: slices.Clone(in.AllowIPs)}
	in.RateLimit.apply(k)
	if in.TokenLimit != nil {
		tl := *in.TokenLimit
		k.TokenLimit = &tl
	}
	if in.Budget != nil {
		currency, err := s.Currency(ctx, k.AccountID)
		if err != nil {
			return NewKey{}, err
		}
		if k.Budget, err = in.Budget.in(currency); err != nil {
			return NewKey{}, err
		}
	}
	k.SetVersion()
	secret, err := s.mint(k)
	if err != nil {
		return NewKey{}, err
	}
	if err := s.st.CreateKey(ctx, k); err != nil {
		return NewKey{}, err
	}
	if s.live != nil {
		s.live.put(k)
	}
	n := NewKey{KeyView: ViewKey(k, nil, now), Secret: secret}
	return n, s.record(ctx, Change{Actor: by, Action: ActionKeyCreate, TargetKind: "key", TargetID: k.ID, After: auditKey(k, now)})
}

// mint makes a new key for k's env, fills in k's id, hash and masked form
// and returns the key itself; it does not store k.
func (s *Service) mint(k *store.Key) (string, error) {
	secret, err := s.format.Mint(s.keys.Prefix(k.Env))
	if err != nil {
		return "", fmt.Errorf("mint key: %w", err)
	}
	if k.ID, err = apikey.NewID(); err != nil {
		return "", fmt.Errorf("mint key id: %w", err)
	}
	k.Hash = apikey.Hash(secret)
	k.Masked = s.format.Mask(secret)
	return secret, nil
}

// auditKey is the key's record and status as JSON, without its hash.
func auditKey(k *store.Key, now time.Time) json.RawMessage {
	b, err := mergeJSON(k, struct {
		Status string `json:"status"`
	}{k.Status(now)}, "hash")
	if err != nil {
		return nil
	}
	return b
}

// keyNotFound turns store.ErrNotFound into NotFound for key id, shown
// masked if it is a key rather than an id, and leaves other errors alone.
func (s *Service) keyNotFound(id string, err error) error {
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	shown := id
	if s.format.HasPrefix(id) {
		shown = s.format.Mask(id)
	}
	return notFound(CodeKeyNotFound, "key", id, shown)
}

// ResolveKey accepts a key id, or the key itself (people paste leaked
// keys to revoke them): a key is looked up by its hash and never shown
// whole.
func (s *Service) ResolveKey(ctx context.Context, arg string) (string, error) {
	if !s.format.HasPrefix(arg) {
		return arg, nil
	}
	k, _, err := s.st.KeyByHash(ctx, apikey.Hash(arg))
	if err != nil {
		return "", s.keyNotFound(arg, err)
	}
	return k.ID, nil
}

// GetKey is key id's view.
func (s *Service) GetKey(ctx context.Context, id string) (KeyView, error) {
	k, _, err := s.st.KeyByID(ctx, id)
	if err != nil {
		return KeyView{}, s.keyNotFound(id, err)
	}
	return s.view(ctx, k)
}

// view is k's view with its use.
func (s *Service) view(ctx context.Context, k *store.Key) (KeyView, error) {
	u, err := s.st.KeyUsage(ctx, k.ID)
	if err != nil {
		return KeyView{}, err
	}
	return ViewKey(k, u, s.now()), nil
}

// Currency is the currency of account id: the default for an account not
// yet made.
func (s *Service) Currency(ctx context.Context, id string) (string, error) {
	acct, _, err := s.st.Account(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return money.DefaultCurrency, nil
	case err != nil:
		return "", err
	}
	return acct.Currency, nil
}

var errAlreadyRevoked = errors.New("already revoked")

// RevokeKey revokes key id. A key revoked already is left as it is, and
// reported so (already true).
func (s *Service) RevokeKey(ctx context.Context, by Actor, id string) (v KeyView, already bool, err error) {
	var prior *store.Key
	var before json.RawMessage
	now := s.now().UTC()
	k, err := s.st.UpdateKey(ctx, id, func(k *store.Key) error {
		if k.Revoked() {
			prior = k
			return errAlreadyRevoked
		}
		before = auditKey(k, now)
		k.RevokedAt = &now
		return nil
	})
	switch {
	case prior != nil:
		k = prior
	case err != nil:
		return KeyView{}, false, s.keyNotFound(id, err)
	default:
		if s.live != nil {
			s.live.put(k)
		}
	}
	if v, err = s.view(ctx, k); err != nil {
		return KeyView{}, false, err
	}
	if prior != nil {
		return v, true, nil
	}
	return v, false, s.record(ctx, Change{Actor: by, Action: ActionKeyRevoke, TargetKind: "key", TargetID: k.ID,
		Before: before, After: auditKey(k, now)})
}

// RotateInput says how a key is rotated.
type RotateInput struct {
	// Grace is how long the old key keeps working; 0 ends it now.
	Grace time.Duration
	// Force rotates a key that already has a successor (which is kept).
	Force bool
}

// RotateKey mints a successor of key id, with its account, name, env,
// scopes, limits and restrictions, and shortens the old key's life to the
// grace period. A key that already has a successor is refused unless
// Force; the store's compare-and-set makes concurrent rotations of one
// key refuse all but one.
func (s *Service) RotateKey(ctx context.Context, by Actor, id string, in RotateInput) (NewKey, error) {
	if in.Grace < 0 {
		return NewKey{}, invalid("grace", "%s is not 0 or more", in.Grace)
	}
	old, _, err := s.st.KeyByID(ctx, id)
	if err != nil {
		return NewKey{}, s.keyNotFound(id, err)
	}
	now := s.now().UTC()
	var before json.RawMessage
	// The successor is built from old: the compare-and-set, which runs
	// check on the record as stored, must find the key it was built from
	// (a change in between could have narrowed the key, and the
	// successor would be looser than the key it replaces).
	base := successor(old, now)
	check := func(k *store.Key) error {
		before = auditKey(k, now)
		if err := rotatable(k, now, in.Force); err != nil {
			return err
		}
		if !reflect.DeepEqual(successor(k, now), base) {
			return conflict(CodeKeyChanged, k.ID, "key %s changed while it was being rotated; rotate it again", k.ID)
		}
		return nil
	}
	if err := check(old); err != nil {
		return NewKey{}, err
	}
	k := successor(old, now)
	secret, err := s.mint(k)
	if err != nil {
		return NewKey{}, err
	}
	updated, err := s.st.RotateKey(ctx, id, k, now.Add(in.Grace), check)
	if err != nil {
		return NewKey{}, s.keyNotFound(id, err)
	}
	if s.live != nil {
		s.live.put(updated)
		s.live.put(k)
	}
	n := NewKey{KeyView: ViewKey(k, nil, now), Secret: secret, OldID: id, OldExpiresAt: updated.ExpiresAt}
	return n, s.record(ctx, Change{Actor: by, Action: ActionKeyRotate, TargetKind: "key", TargetID: id,
		Before: before, After: auditKey(updated, now)})
}

// rotatable refuses to rotate a key that is not active, that has members
// this keygate cannot read, or that already has a successor unless force.
func rotatable(k *store.Key, now time.Time, force bool) error {
	if st := k.Status(now); st != "active" {
		return conflict(CodeKeyNotActive, k.ID, "key %s is %s", k.ID, st)
	}
	if u := k.Unsupported(); len(u) > 0 {
		// A successor would be made without what this keygate cannot
		// read, looser than the key it replaces.
		return conflict(CodeKeyUnknownMembers, k.ID, "key %s has members this keygate does not know (%s); rotate it with a keygate that does",
			k.ID, strings.Join(u, ", "))
	}
	if k.SuccessorID != "" && !force {
		expires := "never"
		if k.ExpiresAt != nil {
			expires = k.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return conflict(CodeKeyAlreadyRotated, k.ID, "key %s was already rotated: its successor is %s and it expires at %s",
			k.ID, k.SuccessorID, expires)
	}
	return nil
}

// successor is a new key record with old's account, env, name, scopes,
// rate limit and restrictions, and no expiry.
func successor(old *store.Key, now time.Time) *store.Key {
	k := &store.Key{
		AccountID: old.AccountID,
		Name:      old.Name,
		Env:       old.Env,
		Scopes:    slices.Clone(old.Scopes),
		CreatedAt: now,
		// no_rate_limit is kept: a successor is never stricter, nor looser.
		NoRateLimit: old.NoRateLimit,
		// The two share one rate-limit budget while both work.
		BudgetID: old.LimitID(),
	}
	if old.RateLimit != nil {
		rl := *old.RateLimit
		k.RateLimit = &rl
	}
	// The two share the token limit and the budget (BudgetID) too.
	k.Models = slices.Clone(old.Models)
	k.AllowIPs = slices.Clone(old.AllowIPs)
	if old.TokenLimit != nil {
		tl := *old.TokenLimit
		k.TokenLimit = &tl
	}
	if old.Budget != nil {
		b := *old.Budget
		k.Budget = &b
	}
	k.SetVersion()
	return k
}
