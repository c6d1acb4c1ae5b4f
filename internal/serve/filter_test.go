package serve_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// waitFilter waits until e's key filter is loaded.
func waitFilter(t *testing.T, e *env) {
	t.Helper()
	poll.Until(t, 10*time.Second, "the key filter loaded", e.inst.KeyFilter().Ready)
}

// lookups is how many times e has read the key store for a key.
func (e *env) lookups() uint64 { return e.inst.KeyLookups() }

// TestFloodCostsNoLookups: unknown keys with a valid checksum are denied
// without store lookups (a few false positives aside), while keys in the
// store, old and new, are allowed and a revoked one stays denied.
func TestFloodCostsNoLookups(t *testing.T) {
	for _, checksum := range []bool{true, false} {
		t.Run(map[bool]string{true: "checksum", false: "no checksum"}[checksum], func(t *testing.T) {
			ns := natstest.Run(t)
			cfg := testConfig(t, ns.ClientURL())
			cfg.Keys.Checksum = checksum
			cfg.DefaultRateLimit = "none"
			e := start(t, cfg)
			st := openStore(t, e, ns)
			setBalance(t, e.ctx, st, "acme", 1e6)
			var keys []string
			for range 200 {
				k, _ := createKey(t, e.ctx, st, "acme")
				keys = append(keys, k)
			}
			waitFilter(t, e)
			before := e.lookups()
			const flood = 5000
			for range flood {
				key := floodKey(checksum)
				if got := e.code(t, key); got != 401 {
					t.Fatalf("an unknown key answered %d", got)
				}
			}
			if n := e.lookups() - before; n > flood/100 {
				t.Fatalf("%d store lookups for %d unknown keys", n, flood)
			}
			for _, k := range keys {
				if got := e.code(t, k); got != 200 {
					t.Fatalf("a key in the store answered %d", got)
				}
			}
			fresh, rec := createKey(t, e.ctx, st, "acme")
			waitCode(t, e, fresh, 200)
			if _, err := st.UpdateKey(e.ctx, rec.ID, func(k *store.Key) error { now := time.Now(); k.RevokedAt = &now; return nil }); err != nil {
				t.Fatal(err)
			}
			waitCode(t, e, fresh, 401)
		})
	}
}

// floodKey is a random key of the default format: with a valid checksum,
// or (for keys.checksum: false) any 32 characters.
func floodKey(checksum bool) string {
	if checksum {
		k, _ := apikey.DefaultFormat().Mint(apikey.LivePrefix)
		return k
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return apikey.LivePrefix + string(b)
}

// TestFilterFallsBack: while the filter is not known to be current (NATS
// away from keygate), unknown keys are looked up as before (and answered
// 503 as the store cannot be reached), never turned away as unknown; a
// key created meanwhile works once keygate has caught up.
func TestFilterFallsBack(t *testing.T) {
	ns := natstest.Run(t)
	p := newProxy(t, ns.Addr().String())
	cfg := testConfig(t, p.url())
	cfg.Cache.MaxStaleness = config.Duration(time.Hour)
	e := start(t, cfg)
	st := openStore(t, e, ns)
	setBalance(t, e.ctx, st, "acme", 1e6)
	waitFilter(t, e)
	p.setCut(true)
	poll.Until(t, 10*time.Second, "not ready", func() bool { return !e.inst.Ready() })
	if got := e.code(t, floodKey(true)); got != 503 {
		t.Fatalf("unknown key during the outage: %d, want 503 (looked up, store unreachable)", got)
	}
	fresh, _ := createKey(t, e.ctx, st, "acme") // created while keygate cannot see it
	p.setCut(false)
	poll.Until(t, 10*time.Second, "ready", e.inst.Ready)
	waitCode(t, e, fresh, 200)
}
