package settle_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
)

// keygate is one keygate's money: its funds and settler.
type keygate struct {
	id    string
	funds *funds.Funds
	set   *settle.Settler
	stop  context.CancelFunc
	st    *store.Store
	told  *atomic.Int64 // settlements the Settled hook was told of
}

// price: 1 minor unit per input token, 2 per output token.
var price = pricing.Charge{Outcome: pricing.Metered, Tokens: true, Price: pricing.Price{Input: money.NanosPerMinor, CachedInput: money.NanosPerMinor / 2, Output: 2 * money.NanosPerMinor}}

func fleet(t *testing.T, n int, balance int64, ttl time.Duration) (context.Context, []*keygate) {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	o := store.DefaultOptions()
	o.HoldTTL = ttl
	var kgs []*keygate
	for i := range n {
		_, js := natstest.Connect(t, ns)
		st, err := store.Open(ctx, js, o)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("kg%d", i)
		f := funds.New(st, funds.Options{ID: id, Peers: func() int64 { return int64(n) }})
		told := &atomic.Int64{}
		s := settle.New(settle.Options{ID: id, Store: st, Funds: f, ExpiryGrace: time.Second,
			Settled: func(*settle.Reservation, *settle.Settlement) { told.Add(1) }})
		rctx, stop := context.WithCancel(ctx)
		go func() {
			if err := s.Run(rctx); err != nil && rctx.Err() == nil { // stopped while starting: not a failure
				t.Error(err)
			}
		}()
		t.Cleanup(stop)
		kgs = append(kgs, &keygate{id: id, funds: f, set: s, stop: stop, st: st, told: told})
	}
	if _, err := kgs[0].st.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = balance; return nil }); err != nil {
		t.Fatal(err)
	}
	return ctx, kgs
}

// reserve holds the estimate of a request of in and out tokens at kg, as
// a check does.
func (kg *keygate) reserve(t testing.TB, ctx context.Context, in, out int64, ttl time.Duration) *settle.Reservation {
	est, _ := price.Estimate(in, out)
	r := kg.funds.Hold(ctx, "acme", est)
	for r.Unavailable {
		r = kg.funds.Hold(ctx, "acme", est)
	}
	if !r.OK {
		t.Errorf("hold of %d: %+v", est, r)
		return nil
	}
	now := time.Now()
	res := settle.Reservation{Account: "acme", Key: "key_1", Model: "m", Currency: "MXN",
		Charge: settle.ChargeOf(price), InputTokens: in, OutputTokens: out, Estimate: est, Held: est, Created: now, Expires: now.Add(ttl)}
	res.ID, res.Holder = kg.set.Reserve(res), kg.id
	return &res
}

func balance(t testing.TB, ctx context.Context, kg *keygate) money.Exact {
	t.Helper()
	a, _, err := kg.st.Account(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	return a.Exact()
}

// 3,000 requests through 3 keygates, each settled from its usage at a
// keygate chosen at random (forwarded to the one that holds it): the
// balance ends at the start minus the sum of their costs, to the nano.
func TestSettledDebitsExact(t *testing.T) {
	const n = 3000
	ctx, kgs := fleet(t, 3, 10_000_000, time.Hour)
	var want int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := kgs[i%3].reserve(t, ctx, 100, 50, time.Hour)
			if r == nil {
				return
			}
			u := pricing.Usage{Input: int64(i % 97), CachedInput: int64(i % 13), Output: int64(i % 41)}
			st, err := kgs[(i*7)%3].set.Settle(ctx, r.ID, settle.Outcome{Usage: u, HasUsage: true})
			if err != nil {
				t.Errorf("settle %d: %v", i, err)
				return
			}
			mu.Lock()
			want += st.Cost
			mu.Unlock()
		})
	}
	wg.Wait()
	end, _ := money.Exact{Minor: 10_000_000}.AddNanos(-want)
	if got := balance(t, ctx, kgs[0]); got != end {
		t.Fatalf("balance %v after %d settlements, want %v", got, n, end)
	}
	for _, kg := range kgs {
		if _, held := kg.funds.Balance("acme"); held != 0 {
			t.Errorf("%s still holds %d", kg.id, held)
		}
	}
}

// A settlement is written once: the same reservation settled again, or
// with other usage, or elsewhere, answers the first settlement.
func TestSettleOnce(t *testing.T) {
	ctx, kgs := fleet(t, 2, 1000, time.Hour)
	r := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
	first, err := kgs[1].set.Settle(ctx, r.ID, settle.Outcome{Usage: pricing.Usage{Input: 5, Output: 5}, HasUsage: true})
	if err != nil || first.Cost != 15*money.NanosPerMinor || first.Status != settle.StatusSettled {
		t.Fatalf("first settlement: %+v, %v", first, err)
	}
	for _, kg := range kgs {
		again, err := kg.set.Settle(ctx, r.ID, settle.Outcome{Usage: pricing.Usage{Input: 9, Output: 9}, HasUsage: true})
		if err != nil || again.Cost != first.Cost {
			t.Fatalf("settled again at %s: %+v, %v", kg.id, again, err)
		}
	}
	if got := balance(t, ctx, kgs[0]); got != (money.Exact{Minor: 985}) {
		t.Fatalf("balance %v, want 985", got)
	}
	if told := kgs[0].told.Load() + kgs[1].told.Load(); told != 1 {
		t.Fatalf("the Settled hook was told of %d settlements, want 1", told)
	}
	if _, err := kgs[0].set.Settle(ctx, "res_kg0_999_0_acme", settle.Outcome{}); err != settle.ErrUnknown {
		t.Fatalf("an unknown reservation: %v", err)
	}
	if _, err := kgs[0].set.Settle(ctx, "res_kg0_x_0_acme", settle.Outcome{}); err != settle.ErrUnknown {
		t.Fatalf("a malformed reservation id: %v", err)
	}
}

// A reservation whose keygate is gone is settled by another from its
// record; a failed request costs nothing.
func TestSettleInherited(t *testing.T) {
	ctx, kgs := fleet(t, 2, 1000, time.Hour)
	r := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
	failed := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
	poll.Until(t, 10*time.Second, "the hold records written", func() bool { return records(t, ctx, kgs[1].st) == 1 })
	kgs[0].stop()
	poll.Until(t, 10*time.Second, "keygate 0 gone", func() bool {
		_, err := kgs[1].set.Settle(ctx, failed.ID, settle.Outcome{Failed: true})
		return err == nil
	})
	st, err := kgs[1].set.Settle(ctx, r.ID, settle.Outcome{Usage: pricing.Usage{Input: 3, Output: 1}, HasUsage: true})
	if err != nil || st.Cost != 5*money.NanosPerMinor {
		t.Fatalf("inherited settlement: %+v, %v", st, err)
	}
	if got := balance(t, ctx, kgs[1]); got != (money.Exact{Minor: 995}) {
		t.Fatalf("balance %v, want 995", got)
	}
}

// A reservation never settled settles at its estimate when its TTL
// passes, even with the keygate that held it gone; one settled is never
// charged again by its expiry.
func TestExpiry(t *testing.T) {
	ttl := 2 * time.Second
	ctx, kgs := fleet(t, 2, 1000, ttl)
	settled := kgs[0].reserve(t, ctx, 10, 10, ttl)
	lost := kgs[0].reserve(t, ctx, 10, 10, ttl) // 30 at its estimate
	poll.Until(t, 10*time.Second, "the hold records written", func() bool { return records(t, ctx, kgs[1].st) == 1 })
	if _, err := kgs[0].set.Settle(ctx, settled.ID, settle.Outcome{Usage: pricing.Usage{Input: 1}, HasUsage: true}); err != nil {
		t.Fatal(err)
	}
	kgs[0].stop()
	poll.Until(t, 20*time.Second, "the lost reservation expired", func() bool {
		return balance(t, ctx, kgs[1]) == money.Exact{Minor: 1000 - 1 - 30}
	})
	st, err := kgs[1].set.Settle(ctx, lost.ID, settle.Outcome{Usage: pricing.Usage{Input: 1}, HasUsage: true})
	if err != nil || st.Status != settle.StatusExpired {
		t.Fatalf("a settlement after the expiry: %+v, %v", st, err)
	}
	if got := balance(t, ctx, kgs[1]); got != (money.Exact{Minor: 969}) {
		t.Fatalf("balance %v, want 969", got)
	}
}

// A reservation whose settlement entry is gone (its TTL ran out) is not
// settled again: its keygate no longer holds it and answers no
// settlement, whichever keygate is asked, and neither debits it nor
// gives back what requests in flight hold.
func TestSettleAgainAfterEntryGone(t *testing.T) {
	ctx, kgs := fleet(t, 2, 1000, time.Hour)
	r := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
	poll.Until(t, 10*time.Second, "the hold record written", func() bool { return records(t, ctx, kgs[0].st) == 1 })
	kgs[0].reserve(t, ctx, 100, 100, time.Hour) // in flight: holds 300
	u := settle.Outcome{Usage: pricing.Usage{Input: 5, Output: 5}, HasUsage: true}
	if st, err := kgs[0].set.Settle(ctx, r.ID, u); err != nil || st.Cost != 15*money.NanosPerMinor {
		t.Fatalf("settlement: %+v, %v", st, err)
	}
	dropEntry(t, ctx, kgs[0].st, r.ID)
	for _, kg := range kgs {
		if st, err := kg.set.Settle(ctx, r.ID, u); !errors.Is(err, settle.ErrUnknown) {
			t.Errorf("settled again at %s: %+v, %v; want %v", kg.id, st, err, settle.ErrUnknown)
		}
	}
	if got := balance(t, ctx, kgs[0]); got != (money.Exact{Minor: 985}) {
		t.Errorf("balance %v, want 985", got)
	}
	if _, held := kgs[0].funds.Balance("acme"); held != 300*money.NanosPerMinor {
		t.Errorf("kg0 holds %d for the request in flight, want %d", held, 300*money.NanosPerMinor)
	}
	if told := kgs[0].told.Load() + kgs[1].told.Load(); told != 1 {
		t.Errorf("the Settled hook was told of %d settlements, want 1", told)
	}
}

// A reservation is settled only until its expiry's grace and
// store.RecordGrace have passed since its TTL, however it is found (held
// in memory, or from its record), and its settlement entry lives
// store.RecordGrace longer: past that time nothing settles it, so its
// records, which can outlive the entry, never settle it twice.
func TestSettleDeadline(t *testing.T) {
	ttl := time.Hour
	ctx, kgs := fleet(t, 2, 1000, ttl)
	late := clockAhead(kgs[1], ttl+time.Second+store.RecordGrace+time.Minute)
	r := kgs[0].reserve(t, ctx, 10, 10, ttl)
	poll.Until(t, 10*time.Second, "the hold record written", func() bool { return records(t, ctx, kgs[1].st) == 1 })
	kgs[0].stop()
	nc := kgs[1].st.JetStream().Conn()
	poll.Until(t, 10*time.Second, "keygate 0 gone", func() bool {
		_, err := nc.Request(settle.SettleSubject(kgs[1].st.HoldsStream())+".kg0", []byte(`{}`), time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	})
	u := settle.Outcome{Usage: pricing.Usage{Input: 3, Output: 1}, HasUsage: true}
	if st, err := late.set.Settle(ctx, r.ID, u); !errors.Is(err, settle.ErrUnknown) {
		t.Fatalf("settled from its record too late: %+v, %v", st, err)
	}
	if got := balance(t, ctx, kgs[1]); got != (money.Exact{Minor: 1000}) {
		t.Fatalf("balance %v, want 1000", got)
	}
	st, err := kgs[1].set.Settle(ctx, r.ID, u)
	if err != nil || st.Cost != 5*money.NanosPerMinor {
		t.Fatalf("settled in time: %+v, %v", st, err)
	}
	gone := entryGone(t, ctx, kgs[1].st, r.ID)
	if last := r.Expires.Add(time.Second + store.RecordGrace); gone.Before(last.Add(store.RecordGrace - time.Second)) {
		t.Errorf("the settlement entry is gone at %v, before an hour past the last settlement taken (%v)", gone, last)
	}
	dropEntry(t, ctx, kgs[1].st, r.ID)
	if st, err := late.set.Settle(ctx, r.ID, u); !errors.Is(err, settle.ErrUnknown) {
		t.Errorf("settled again from its record: %+v, %v", st, err)
	}
	if got := balance(t, ctx, kgs[1]); got != (money.Exact{Minor: 995}) {
		t.Errorf("balance %v, want 995", got)
	}
	// Held in memory by a keygate that could not settle it in time: it
	// is dropped, and what it held is free again.
	own := late.reserve(t, ctx, 10, 10, ttl)
	if st, err := late.set.Settle(ctx, own.ID, settle.Outcome{Expired: true}); !errors.Is(err, settle.ErrUnknown) {
		t.Errorf("settled in memory too late: %+v, %v", st, err)
	}
	if _, held := late.funds.Balance("acme"); held != 0 || late.set.Outstanding() != 0 {
		t.Errorf("after a settlement too late: %d held, %d outstanding", held, late.set.Outstanding())
	}
	if got := balance(t, ctx, kgs[1]); got != (money.Exact{Minor: 995}) {
		t.Errorf("balance %v, want 995", got)
	}
}

// clockAhead is another keygate beside kg, on its store, whose clock is
// ahead by d; it is not run.
func clockAhead(kg *keygate, d time.Duration) *keygate {
	now := func() time.Time { return time.Now().Add(d) }
	f := funds.New(kg.st, funds.Options{ID: "kg9", Peers: func() int64 { return 2 }})
	s := settle.New(settle.Options{ID: "kg9", Store: kg.st, Funds: f, ExpiryGrace: time.Second, Now: now})
	return &keygate{id: "kg9", funds: f, set: s, stop: func() {}, st: kg.st, told: &atomic.Int64{}}
}

// settlementEntry is the message of reservation id's settlement entry in
// the accounts bucket's stream.
func settlementEntry(t testing.TB, ctx context.Context, st *store.Store, id string) (jetstream.Stream, *jetstream.RawStreamMsg) {
	t.Helper()
	s, err := st.JetStream().Stream(ctx, "KV_"+st.Accounts().Bucket())
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "$KV."+st.Accounts().Bucket()+"."+store.SettlementEntry("acme", id))
	if err != nil {
		t.Fatal(err)
	}
	return s, m
}

// entryGone is when reservation id's settlement entry expires.
func entryGone(t testing.TB, ctx context.Context, st *store.Store, id string) time.Time {
	t.Helper()
	_, m := settlementEntry(t, ctx, st, id)
	ttl, err := time.ParseDuration(m.Header.Get("Nats-TTL"))
	if err != nil {
		t.Fatalf("the settlement entry's TTL: %v", err)
	}
	return m.Time.Add(ttl)
}

// dropEntry removes reservation id's settlement entry as its TTL does,
// leaving no marker.
func dropEntry(t testing.TB, ctx context.Context, st *store.Store, id string) {
	t.Helper()
	s, m := settlementEntry(t, ctx, st, id)
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(m.Subject)); err != nil {
		t.Fatal(err)
	}
}

// records counts the hold records in the holds stream.
func records(t testing.TB, ctx context.Context, st *store.Store) uint64 {
	s, err := st.JetStream().Stream(ctx, st.HoldsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(st.HoldsStream()+".hold.>"))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
