package serve_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// TestStartDuringChanges: a sidecar started while keys and balances are
// changing, and filling its cache meanwhile, ends up with every final
// value: nothing falls between its first reads and its watch.
func TestStartDuringChanges(t *testing.T) {
	const nkeys, naccounts, rounds = 40, 8, 30
	ns := natstest.Run(t)
	first := start(t, noLimit(testConfig(t, ns.ClientURL())))
	st := openStore(t, first, ns)
	ctx := first.ctx
	keys := make([]string, nkeys)
	recs := make([]*store.Key, nkeys)
	for i := range keys {
		keys[i], recs[i] = createKey(t, ctx, st, fmt.Sprint("acct", i%naccounts))
	}

	var wg sync.WaitGroup
	startSidecar := make(chan struct{})
	wg.Go(func() { // the writer
		for r := range rounds {
			if r == rounds/3 {
				close(startSidecar)
			}
			for a := range naccounts {
				setBalance(t, ctx, st, fmt.Sprint("acct", a), int64((r+a)%2*100))
			}
			i := r % nkeys
			if _, err := st.UpdateKey(ctx, recs[i].ID, func(k *store.Key) error {
				if k.RevokedAt == nil {
					now := time.Now()
					k.RevokedAt = &now
				} else {
					k.RevokedAt = nil
				}
				return nil
			}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	<-startSidecar
	second := start(t, noLimit(testConfig(t, ns.ClientURL())))
	for range 3 { // fill its cache while the writer goes on
		for _, k := range keys {
			second.code(t, k)
		}
	}
	wg.Wait()

	for i, k := range keys {
		want := expected(t, ctx, st, recs[i].ID)
		waitCode(t, second, k, want)
		waitCode(t, first, k, want)
	}
}

func noLimit(cfg config.Config) config.Config {
	cfg.DefaultRateLimit = "none"
	return cfg
}

// expected is the answer the store's current records call for.
func expected(t *testing.T, ctx context.Context, st *store.Store, id string) int {
	k, _, err := st.KeyByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if k.Revoked() {
		return 401
	}
	a, _, err := st.Account(ctx, k.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance <= 0 {
		return 402
	}
	return 200
}
