package admin

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/store"
)

// KeyPatch is what UpdateKey changes of a key: the fields set, and
// nothing else.
type KeyPatch struct {
	Name       Opt[string]
	Scopes     Opt[[]string]
	RateLimit  Opt[RateLimit]
	Models     Opt[[]string]          // nil: any model
	TokenLimit Opt[*store.TokenLimit] // nil: no limit
	Budget     Opt[*Budget]           // nil: no budget
	Expiry     Opt[Expiry]            // zero: never
	AllowIPs   Opt[[]string]
}

// Empty reports whether the patch changes nothing.
func (p *KeyPatch) Empty() bool {
	return !p.Name.Set && !p.Scopes.Set && !p.RateLimit.Set && !p.Models.Set && !p.TokenLimit.Set &&
		!p.Budget.Set && !p.Expiry.Set && !p.AllowIPs.Set
}

// Check checks what can be checked without the store.
func (p *KeyPatch) Check(now time.Time) error {
	if p.Name.Set {
		if err := checkName(p.Name.V); err != nil {
			return err
		}
	}
	if p.Scopes.Set {
		var err error
		if p.Scopes.V, err = normalScopes(p.Scopes.V); err != nil {
			return err
		}
	}
	if p.RateLimit.Set {
		if err := p.RateLimit.V.check(); err != nil {
			return err
		}
	}
	if p.Models.Set && p.Models.V != nil {
		if err := checkModels(p.Models.V); err != nil {
			return err
		}
	}
	if p.TokenLimit.Set && p.TokenLimit.V != nil {
		if err := checkTokenLimit(p.TokenLimit.V); err != nil {
			return err
		}
	}
	if p.Budget.Set && p.Budget.V != nil {
		if err := p.Budget.V.checkForm(); err != nil {
			return err
		}
	}
	if p.Expiry.Set {
		if err := p.Expiry.V.check(now); err != nil {
			return err
		}
	}
	if p.AllowIPs.Set {
		var err error
		p.AllowIPs.V, err = normalAllowIPs(p.AllowIPs.V)
		return err
	}
	return nil
}

var errRevoked = errors.New("revoked")

// UpdateKey applies p to key id by compare-and-set, keeping what it does
// not change (members this keygate does not know included), and sets the
// record's format to match. It refuses a revoked key. An empty patch
// changes nothing and records nothing.
func (s *Service) UpdateKey(ctx context.Context, by Actor, id string, p KeyPatch) (KeyView, error) {
	now := s.now().UTC()
	if err := p.Check(now); err != nil {
		return KeyView{}, err
	}
	old, _, err := s.st.KeyByID(ctx, id)
	if err != nil {
		return KeyView{}, s.keyNotFound(id, err)
	}
	if p.Empty() {
		return s.view(ctx, old)
	}
	var budget *store.Budget
	if p.Budget.Set && p.Budget.V != nil {
		currency, err := s.Currency(ctx, old.AccountID)
		if err != nil {
			return KeyView{}, err
		}
		if budget, err = p.Budget.V.in(currency); err != nil {
			return KeyView{}, err
		}
	}
	var revokedAt time.Time
	var before json.RawMessage
	k, err := s.st.UpdateKey(ctx, id, func(k *store.Key) error {
		if k.Revoked() {
			revokedAt = *k.RevokedAt
			return errRevoked
		}
		before = auditKey(k, now)
		p.apply(k, budget, now)
		return nil
	})
	if errors.Is(err, errRevoked) {
		return KeyView{}, conflict(CodeKeyRevoked, id, "key %s was revoked at %s; a revoked key is not changed", id, revokedAt.UTC().Format(time.RFC3339))
	}
	if err != nil {
		return KeyView{}, s.keyNotFound(id, err)
	}
	if s.live != nil {
		s.live.put(k)
	}
	v, err := s.view(ctx, k)
	if err != nil {
		return KeyView{}, err
	}
	return v, s.record(ctx, Change{Actor: by, Action: ActionKeyUpdate, TargetKind: "key", TargetID: id,
		Before: before, After: auditKey(k, now)})
}

// apply sets on k what p changes, budget in minor units.
func (p *KeyPatch) apply(k *store.Key, budget *store.Budget, now time.Time) {
	if p.Name.Set {
		k.Name = p.Name.V
	}
	if p.Scopes.Set {
		k.Scopes = slices.Clone(p.Scopes.V)
	}
	if p.RateLimit.Set {
		p.RateLimit.V.apply(k)
	}
	if p.Models.Set {
		k.Models = slices.Clone(p.Models.V)
	}
	if p.TokenLimit.Set {
		k.TokenLimit = nil
		if t := p.TokenLimit.V; t != nil {
			tl := *t
			k.TokenLimit = &tl
		}
	}
	if p.Budget.Set {
		k.Budget = budget
	}
	if p.Expiry.Set {
		k.ExpiresAt = p.Expiry.V.at(now)
	}
	if p.AllowIPs.Set {
		k.AllowIPs = slices.Clone(p.AllowIPs.V)
	}
	k.SetVersion()
}
