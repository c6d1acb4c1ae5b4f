package funds_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// Cut off from NATS, a keygate holds at most its share of what was
// available when it last read the account (avail / peers), and once it
// is back what it held so is added to its lease.
func TestOutageShare(t *testing.T) {
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	p := natstest.NewProxy(t, ns.Addr().String())
	nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateAccount(ctx, "acme", true, func(a *store.Account) error { a.Balance = 30; return nil }); err != nil {
		t.Fatal(err)
	}
	f := funds.New(st, funds.Options{ID: "kg0", Peers: func() int64 { return 3 }, Online: nc.IsConnected})
	if r := f.Hold(ctx, "acme", minor); !r.OK { // reads the account: 30 available
		t.Fatal(r)
	}
	p.Cut(true)
	natstest.WaitDisconnected(t, nc)
	held := 0
	for range 20 {
		if r := f.Hold(ctx, "acme", minor); r.OK {
			held++
		}
	}
	// One unit was leased before the cut; the share is 29/3 of what was
	// available after it: 9 more.
	if held != 9 {
		t.Fatalf("held %d under the outage rule, want 9 (29 available / 3 keygates)", held)
	}
	p.Cut(false)
	natstest.WaitConnected(t, nc)
	go f.Run(ctx)
	poll.Until(t, 10*time.Second, "the outage holds charged to the lease", func() bool {
		a, _, err := st.Account(ctx, "acme")
		return err == nil && a.Holds["kg0"].Nanos == 10*minor
	})
}

// A keygate's spare lease goes back once the account is idle; a hold of
// a keygate silent past Abandoned is dropped by the next writer.
func TestHandBackAndAbandoned(t *testing.T) {
	ctx, st, _ := fleet(t, 1, 100)
	now := time.Now()
	clock := func() time.Time { return now }
	dead := funds.New(st, funds.Options{ID: "dead", Now: clock, Abandoned: time.Hour})
	if r := dead.Hold(ctx, "acme", 40*minor); !r.OK {
		t.Fatal(r)
	}
	now = now.Add(2 * time.Hour)
	live := funds.New(st, funds.Options{ID: "live", Now: clock, Abandoned: time.Hour})
	if r := live.Hold(ctx, "acme", 100*minor); !r.OK {
		t.Fatalf("the dead keygate's hold was not dropped: %+v", r)
	}
	live.Release("acme", 100*minor)
	now = now.Add(time.Minute)
	live.Sweep(ctx)
	a, _, err := st.Account(ctx, "acme")
	if err != nil || len(a.Holds) != 0 {
		t.Fatalf("holds after the hand-back: %v, %v", a.Holds, err)
	}
}
