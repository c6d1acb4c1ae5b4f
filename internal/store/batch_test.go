package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// Commits on one account from three stores at once (one committer each,
// as keygates commit) each land exactly once, with their entries; a
// second commit of an entry leaves it out; every entry reaches the
// ledger.
func TestCommitAccount(t *testing.T) {
	ctx, sts := openStores(t, 3)
	if _, err := sts[0].UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = 1000; return nil }); err != nil {
		t.Fatal(err)
	}
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for j, st := range sts {
		wg.Go(func() {
			for i := j; i < n; i += len(sts) {
				key := store.SettlementEntry("acme", "res_"+string(rune('A'+i%26))+string(rune('a'+i/26)))
				_, _, err := st.CommitAccount(ctx, "acme", []store.Entry{{Key: key, Value: []byte(`{"cost":10}`), TTL: time.Hour}},
					func(a *store.Account, e []store.Entry) error {
						a.Balance -= 10 * int64(len(e))
						return nil
					})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a, _, err := sts[0].Account(ctx, "acme")
	if err != nil || a.Balance != 1000-10*n {
		t.Fatalf("balance %d, %v; want %d", a.Balance, err, 1000-10*n)
	}
	dup := store.SettlementEntry("acme", "res_Aa")
	_, existed, err := sts[1].CommitAccount(ctx, "acme", []store.Entry{{Key: dup, Value: []byte(`{}`)}}, func(a *store.Account, e []store.Entry) error {
		a.Balance -= 10 * int64(len(e))
		return nil
	})
	if err != nil || len(existed) != 1 || existed[0] != dup {
		t.Fatalf("second commit of an entry: existed %v, %v", existed, err)
	}
	if a, _, _ := sts[0].Account(ctx, "acme"); a.Balance != 1000-10*n {
		t.Fatalf("a refused commit changed the balance to %d", a.Balance)
	}
	ledger, err := sts[0].JetStream().Stream(ctx, store.DefaultOptions().LedgerStream)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "every settlement in the ledger", func() bool {
		info, err := ledger.Info(context.Background(), jetstream.WithSubjectFilter(">"))
		return err == nil && info.State.Msgs == n && info.State.Subjects[store.LedgerSubject(store.DefaultOptions().LedgerStream, "acme")] == n
	})
}
