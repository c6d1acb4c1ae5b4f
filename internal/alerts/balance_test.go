package alerts_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// setBalance writes account acme's balance and threshold and returns the
// record's revision.
func (f *fleet) setBalance(t *testing.T, minor int64, threshold *int64) uint64 {
	t.Helper()
	if _, err := f.st.UpdateAccount(f.ctx, "acme", true, func(a *store.Account) error {
		a.Balance, a.BalanceNanos, a.LowBalanceThreshold = minor, 250_000_000, threshold
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rev, err := store.LastRevision(f.ctx, f.st.Accounts())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// seen waits until every keygate has handled account acme's record at
// rev, then until the fleet is quiet.
func (f *fleet) seen(t *testing.T, rev uint64) {
	t.Helper()
	poll.Until(t, 10*time.Second, "every keygate saw the change", func() bool {
		for _, a := range f.kgs {
			if a.Seen("acme") < rev {
				return false
			}
		}
		return true
	})
	f.quiet(t)
}

// Three keygates watch one account: a balance crossing below its
// threshold is one NATS message and one POST, whatever the changes
// around it; crossing back up and down again is another.
func TestLowBalanceOncePerCrossing(t *testing.T) {
	hook := newReceiver(t, always(204))
	f := newFleet(t, 3, alerts.Options{LowBalance: 1000, FlushEvery: 10 * time.Millisecond}, hook, true)
	steps := []struct {
		balance int64
		want    int // alerts in all after the step
	}{
		{5000, 0}, // first seen, above 10.00
		{4000, 0},
		{500, 1},  // crossed below
		{400, 1},  // still below
		{1000, 1}, // at the threshold: re-armed
		{999, 2},  // crossed again
		{-50, 2},
	}
	for i, s := range steps {
		f.seen(t, f.setBalance(t, s.balance, nil))
		if got := f.got.count(); got != s.want {
			t.Fatalf("step %d (balance %d): %d alerts published, want %d", i, s.balance, got, s.want)
		}
		if got := len(hook.received()); got != s.want {
			t.Fatalf("step %d (balance %d): %d POSTs, want %d", i, s.balance, got, s.want)
		}
	}
	got, _ := f.got.alerts(t)
	first := got[0]
	if first.Kind != alerts.KindLowBalance || first.AccountID != "acme" || first.Threshold != "10.00" || first.Value != "5.0025" ||
		first.Currency != "MXN" || first.At.IsZero() || !strings.HasPrefix(first.ID, "low_balance.acme.") {
		t.Fatalf("first alert %+v", first)
	}
	if got[1].Value != "9.9925" || got[1].ID == first.ID {
		t.Fatalf("second alert %+v after %+v", got[1], first)
	}
	posts := hook.received()
	if hook.bad.Load() != 0 || posts[0].id != first.ID || posts[1].id != got[1].ID {
		t.Fatalf("POSTs %+v, %d bad signatures", posts, hook.bad.Load())
	}
	var published uint64
	for _, a := range f.kgs {
		published += a.Stats().Published(alerts.KindLowBalance)
	}
	if published != 2 {
		t.Fatalf("the keygates count %d alerts published, want 2", published)
	}
}

// An account's own threshold wins over the default, and a threshold of
// 0 is off; an account first seen below its threshold has not crossed
// it.
func TestLowBalanceThresholds(t *testing.T) {
	f := newFleet(t, 1, alerts.Options{LowBalance: 0}, nil, true)
	own := int64(300)
	for i, s := range []struct {
		balance   int64
		threshold *int64
		want      int
	}{
		{50, &own, 0}, // first seen below: no crossing
		{400, &own, 0},
		{299, &own, 1},
		{100, nil, 1}, // the default, 0: off
		{50, nil, 1},
	} {
		f.seen(t, f.setBalance(t, s.balance, s.threshold))
		if got := f.got.count(); got != s.want {
			t.Fatalf("step %d: %d alerts, want %d", i, got, s.want)
		}
	}
	if got, _ := f.got.alerts(t); got[0].Threshold != "3.00" || got[0].Value != "2.9925" {
		t.Fatalf("alert %+v, want one at the account's own 3.00", got[0])
	}
}

// Two keygates that see an account's crossing at different revisions
// (one missed the first: its queue was full, or it lags) claim the same
// alert: one per crossing, however their examinations interleave.
func TestLowBalanceSameCrossingFromAnyRevision(t *testing.T) {
	const accounts = 50
	f := newFleet(t, 2, alerts.Options{LowBalance: 1000}, nil, false)
	x, y := f.kgs[0], f.kgs[1]
	above := func(id string) *store.Account { return &store.Account{ID: id, Balance: 2000, Currency: "MXN"} }
	below := func(id string) *store.Account { return &store.Account{ID: id, Balance: 10, Currency: "MXN"} }
	for i := range accounts {
		id := fmt.Sprintf("acct%d", i)
		x.Account(id, 1, above(id))
		y.Account(id, 1, above(id))
	}
	f.quiet(t)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range accounts {
			id := fmt.Sprintf("acct%d", i)
			x.Account(id, 2, below(id))
		}
	})
	wg.Go(func() {
		for i := range accounts {
			id := fmt.Sprintf("acct%d", i)
			y.Account(id, 3, below(id))
		}
	})
	wg.Wait()
	f.quiet(t)
	got, _ := f.got.alerts(t)
	ids := map[string]bool{}
	for _, al := range got {
		ids[al.ID] = true
	}
	if len(got) != accounts || len(ids) != accounts {
		t.Fatalf("%d alerts (%d ids) for %d crossings", len(got), len(ids), accounts)
	}
}
