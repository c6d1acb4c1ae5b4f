package funds_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

const minor = money.NanosPerMinor

// fleet opens n keygates' Funds on one NATS server, each with its own
// connection, and an account "acme" with balance minor units.
func fleet(t *testing.T, n int, balance int64) (context.Context, *store.Store, []*funds.Funds) {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	var st0 *store.Store
	var fs []*funds.Funds
	for i := range n {
		_, js := natstest.Connect(t, ns)
		st, err := store.Open(ctx, js, store.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			st0 = st
		}
		fs = append(fs, funds.New(st, funds.Options{ID: fmt.Sprintf("kg%d", i), Peers: func() int64 { return int64(n) }}))
	}
	if _, err := st0.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = balance; return nil }); err != nil {
		t.Fatal(err)
	}
	return ctx, st0, fs
}

// With a balance worth exactly 10 estimates, 100 holds at once through 3
// keygates allow exactly 10; every other is told the balance is busy
// (it covers the estimate alone) or unavailable, never allowed.
func TestHoldsExactAcrossFleet(t *testing.T) {
	ctx, st, fs := fleet(t, 3, 10)
	var ok, busy, unavailable atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			switch r := fs[i%3].Hold(ctx, "acme", minor); {
			case r.OK:
				ok.Add(1)
			case r.Busy:
				busy.Add(1)
			case r.Unavailable:
				unavailable.Add(1)
			default:
				t.Errorf("a final deny with a balance of %v", r.Balance)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("allowed %d of 100 holds on a balance of 10 estimates (busy %d, unavailable %d)", ok.Load(), busy.Load(), unavailable.Load())
	}
	a, _, err := st.Account(ctx, "acme")
	if err != nil || a.Held() != 10*minor {
		t.Fatalf("holds in the record: %d, %v", a.Held(), err)
	}
	t.Logf("100 holds on 10 estimates: 10 allowed, %d busy, %d unavailable", busy.Load(), unavailable.Load())
}

// A balance that cannot cover an estimate alone is a final answer.
func TestHoldShortIsFinal(t *testing.T) {
	ctx, _, fs := fleet(t, 1, 5)
	if r := fs[0].Hold(ctx, "acme", 6*minor); r.OK || r.Busy || r.Unavailable {
		t.Fatalf("hold of 6 on 5: %+v", r)
	}
	if r := fs[0].Hold(ctx, "acme", 5*minor); !r.OK {
		t.Fatalf("hold of 5 on 5: %+v", r)
	}
}

// 3,000 settled requests through 3 keygates, each debited once: the
// balance ends at the start minus the sum of the costs, to the nano, and
// a settlement written twice is charged once.
func TestDebitsExact(t *testing.T) {
	const n = 3000
	ctx, st, fs := fleet(t, 3, 1_000_000)
	var want int64
	costs := make([]int64, n)
	for i := range costs {
		costs[i] = int64(i)*7_919_123 + 1 // sub-unit amounts of every remainder
		want += costs[i]
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			f := fs[i%3]
			r := f.Hold(ctx, "acme", costs[i])
			for r.Unavailable { // as a client retries a 503
				r = f.Hold(ctx, "acme", costs[i])
			}
			if !r.OK {
				t.Errorf("hold %d: %+v", i, r)
				return
			}
			d := funds.Debit{Entry: store.Entry{Key: store.SettlementEntry("acme", fmt.Sprintf("res%d", i)), Value: []byte(`{}`), TTL: time.Hour},
				Holder: fmt.Sprintf("kg%d", i%3), Held: costs[i], Cost: costs[i]}
			if existed, err := f.Debit(ctx, "acme", d); err != nil || existed {
				t.Errorf("debit %d: existed %v, %v", i, existed, err)
			}
		})
	}
	wg.Wait()
	again := funds.Debit{Entry: store.Entry{Key: store.SettlementEntry("acme", "res7"), Value: []byte(`{}`)}, Holder: "kg1", Cost: costs[7]}
	if existed, err := fs[1].Debit(ctx, "acme", again); err != nil || !existed {
		t.Fatalf("a second settlement of res7: existed %v, %v", existed, err)
	}
	a, _, err := st.Account(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	start := money.Exact{Minor: 1_000_000}
	end, _ := start.AddNanos(-want)
	if a.Exact() != end {
		t.Fatalf("balance %v after %d debits, want %v", a.Exact(), n, end)
	}
	for i, f := range fs {
		if _, held := f.Balance("acme"); held != 0 {
			t.Errorf("keygate %d still holds %d after every request settled", i, held)
		}
	}
}
