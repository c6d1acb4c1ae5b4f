package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// The ledger read gives the settlements of an account, or of every
// account, in order, and none of the markers of entries deleted, purged
// or expired, nor empty bodies; it ends while settlements keep coming.
func TestReadLedger(t *testing.T) {
	ctx, sts := openStores(t, 1)
	st := sts[0]
	js := st.JetStream()
	// Expired entries leave a marker, which the ledger copies.
	kvs, err := js.Stream(ctx, "KV_"+st.Accounts().Bucket())
	if err != nil {
		t.Fatal(err)
	}
	cfg := kvs.CachedInfo().Config
	cfg.SubjectDeleteMarkerTTL = time.Second
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	commit := func(acct, res string, ttl time.Duration) {
		t.Helper()
		body := fmt.Sprintf(`{"reservation_id":%q}`, res)
		_, _, err := st.CommitAccount(ctx, acct, []store.Entry{{Key: store.SettlementEntry(acct, res), Value: []byte(body), TTL: ttl}},
			func(a *store.Account, _ []store.Entry) error { a.Balance--; return nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, acct := range []string{"acme", "beta"} {
		if _, err := st.UpdateAccount(ctx, acct, true, func(a *store.Account) error { a.Balance = 1000; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	commit("acme", "r1", time.Hour)
	commit("beta", "r2", time.Hour)
	commit("acme", "r3", time.Second)
	ledger, err := js.Stream(ctx, store.DefaultOptions().LedgerStream)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func(n uint64) func() bool {
		return func() bool { info, err := ledger.Info(ctx); return err == nil && info.State.Msgs == n }
	}
	// A bucket keeps one message per entry: the ledger copies each before
	// its marker replaces it.
	poll.Until(t, 10*time.Second, "3 settlements in the ledger", msgs(3))
	if err := st.Accounts().Delete(ctx, store.SettlementEntry("acme", "r1")); err != nil {
		t.Fatal(err)
	}
	if err := st.Accounts().Purge(ctx, store.SettlementEntry("beta", "r2")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accounts().Put(ctx, store.SettlementEntry("acme", "r4"), nil); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 20*time.Second, "the expiry marker in the ledger", func() bool {
		m, err := ledger.GetLastMsgForSubject(ctx, store.LedgerSubject(store.DefaultOptions().LedgerStream, "acme"))
		return err == nil && m.Header.Get(jetstream.MarkerReasonHeader) != ""
	})
	if info, err := ledger.Info(ctx); err != nil || info.State.Msgs != 7 {
		t.Fatalf("ledger holds %v messages (%v), want 3 settlements, 3 markers and an empty body", info.State.Msgs, err)
	}

	read := func(acct string, since time.Time) []string {
		t.Helper()
		var out []string
		err := st.ReadLedger(ctx, acct, since, func(b []byte) error { out = append(out, string(b)); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	body := func(res string) string { return fmt.Sprintf(`{"reservation_id":%q}`, res) }
	past := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		acct  string
		since time.Time
		want  []string
	}{
		{"acme", past, []string{body("r1"), body("r3")}},
		{"beta", past, []string{body("r2")}},
		{"", past, []string{body("r1"), body("r2"), body("r3")}},
		{"nobody", past, nil},
		{"", time.Now().Add(time.Hour), nil},
	} {
		if got := read(tc.acct, tc.since); !slices.Equal(got, tc.want) {
			t.Errorf("account %q since %v: %q, want %q", tc.acct, tc.since, got, tc.want)
		}
	}

	// Settlements stored while the ledger is read are left for the next
	// read: the read ends.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; wctx.Err() == nil; i++ {
			_, _, _ = st.CommitAccount(wctx, "acme", []store.Entry{{Key: store.SettlementEntry("acme", fmt.Sprintf("w%d", i)), Value: []byte(`{}`)}},
				func(a *store.Account, _ []store.Entry) error { a.Balance--; return nil })
		}
	})
	for range 3 {
		if got := read("acme", past); len(got) < 2 || !slices.Equal(got[:2], []string{body("r1"), body("r3")}) {
			t.Errorf("read while writing: %q", got)
		}
	}
	stop()
	wg.Wait()
}
