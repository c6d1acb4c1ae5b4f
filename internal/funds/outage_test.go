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
	// The first hold leased 2.5 (a quarter of a third of 30): one more
	// fits in it. Beyond the lease, the share is 27.5 available / 3
	// keygates: 9 more.
	if held != 10 || f.Stats().OutageNanos.Load() != 9*minor {
		t.Fatalf("held %d after the cut, %d nanos under the outage rule; want 10 and 9 units (27.5 available / 3 keygates)", held, f.Stats().OutageNanos.Load())
	}
	p.Cut(false)
	natstest.WaitConnected(t, nc)
	go f.Run(ctx)
	poll.Until(t, 10*time.Second, "the outage holds charged to the lease", func() bool {
		a, _, err := st.Account(ctx, "acme")
		// A lease sent while cut off may land too: at least the lease
		// and the outage holds.
		return err == nil && a.Holds["kg0"].Nanos >= 2*minor+minor/2+9*minor
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
