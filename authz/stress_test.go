package authz_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/store"
)

// TestRevokeRacesFill races revocations against cache fills for the same
// keys, through real NATS: many goroutines check a key that is not cached
// yet while its revocation is written. Once the revocation has been
// applied, no check that starts afterwards may be allowed.
func TestRevokeRacesFill(t *testing.T) {
	const (
		keys     = 1000
		checkers = 8
		after    = 3 // checks per checker once the revocation is applied
	)
	f := newFixture(t)
	f.setBalance(t, "acme", 1e9, nil)
	var allowedAfter, checks atomic.Int64
	for i := range keys {
		key, rec := f.createKey(t, keySpec{limit: unlimited})
		hash := apikey.Hash(key)
		req := request("GET", "/v1/models", bearer(key))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range checkers {
			wg.Go(func() {
				<-start
				for n := 0; n < after; {
					_, applied := f.revoked.Load(hash) // before the check starts
					resp := f.check(t, req)
					checks.Add(1)
					if applied {
						n++
						if resp.GetOkResponse() != nil {
							allowedAfter.Add(1)
						}
					}
				}
			})
		}
		close(start)
		if i%2 == 1 {
			time.Sleep(time.Duration(i%7) * 50 * time.Microsecond) // vary where the write lands
		}
		if _, err := f.st.UpdateKey(f.ctx, rec.ID, func(k *store.Key) error { now := f.clock.now(); k.RevokedAt = &now; return nil }); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
	if n := allowedAfter.Load(); n != 0 {
		t.Fatalf("%d checks allowed after their key's revocation was applied (of %d checks)", n, checks.Load())
	}
}
