package authz_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// TestNoRateLimit: with a default limit of 1 per minute, a key whose
// record says no_rate_limit is allowed every time, without rate-limit
// headers; keys with the same scopes and the default, or a limit of
// their own, keep theirs.
func TestNoRateLimit(t *testing.T) {
	f := newFixture(t)
	srv := authz.New(authz.Options{
		Format:       apikey.DefaultFormat(),
		Credentials:  config.Default().Credentials,
		DefaultLimit: &ratelimit.Limit{Units: 1, Window: time.Minute},
		Now:          f.clock.now,
	}, f.keys, f.accounts)
	client := serveGRPC(t, srv)
	f.setBalance(t, "acme", 100, nil)

	// Keys with the same scopes and env share what the cache interns of
	// them, but for their limits.
	none := f.storeKey(t, func(k *store.Key) { k.NoRateLimit = true })
	dflt, _ := f.createKey(t, keySpec{})
	own, _ := f.createKey(t, keySpec{limit: &store.RateLimit{Requests: 2, Window: store.Duration(time.Minute)}})
	allows := func(key string) int {
		n := 0
		for range 3 {
			resp, err := client.Check(f.ctx, request("GET", "/v1/models", bearer(key)))
			if err != nil {
				t.Fatal(err)
			}
			if ok := resp.GetOkResponse(); ok != nil {
				n++
				if h := headersOf(ok.GetResponseHeadersToAdd()); key == none && h["x-ratelimit-limit"] != "" {
					t.Errorf("unlimited key allowed with rate-limit headers %v", h)
				}
			}
		}
		return n
	}
	for _, tc := range []struct {
		name string
		key  string
		want int
	}{{"no_rate_limit", none, 3}, {"the default", dflt, 1}, {"its own limit", own, 2}} {
		if got := allows(tc.key); got != tc.want {
			t.Errorf("key with %s: %d of 3 requests allowed, want %d", tc.name, got, tc.want)
		}
	}
}

// storeKey stores a live key of account acme with scope *, changed by
// change, and returns the key.
func (f *fixture) storeKey(t *testing.T, change func(*store.Key)) string {
	t.Helper()
	format := apikey.DefaultFormat()
	plain, err := format.Mint(apikey.LivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := apikey.NewID()
	k := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: "acme", Env: store.EnvLive, Scopes: []string{"*"},
		Masked: format.Mask(plain), CreatedAt: f.clock.now()}
	change(k)
	if err := f.st.CreateKey(f.ctx, k); err != nil {
		t.Fatal(err)
	}
	return plain
}

// TestRotatedKeysShareABudget: a key rotated from another spends its
// predecessor's budget (budget_id), so the two together allow the limit
// once during the grace period, not once each.
func TestRotatedKeysShareABudget(t *testing.T) {
	f := newFixture(t)
	f.setBalance(t, "acme", 100, nil)
	lim := &store.RateLimit{Requests: 5, Window: store.Duration(time.Hour)}
	old, rec := f.createKey(t, keySpec{limit: lim})
	succ := f.storeKey(t, func(k *store.Key) { k.RateLimit, k.BudgetID = lim, rec.ID })
	allowed := 0
	for i := range 10 {
		key := []string{old, succ}[i%2]
		if f.check(t, request("GET", "/v1/models", bearer(key))).GetOkResponse() != nil {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a key and its successor allowed %d, want the limit of 5 between them", allowed)
	}
}
