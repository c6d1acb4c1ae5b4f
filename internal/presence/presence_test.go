package presence

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
)

// TestCount: keygates on one NATS count each other; one that stops is
// forgotten after forgetAfter intervals; one cut off keeps its count.
func TestCount(t *testing.T) {
	ns := natstest.Run(t)
	const every = 20 * time.Millisecond
	var ps []*Presence
	cancels := make([]context.CancelFunc, 3)
	for i := range 3 {
		nc, _ := natstest.Connect(t, ns)
		ctx, cancel := context.WithCancel(natstest.Context(t))
		cancels[i] = cancel
		p, err := Start(ctx, nc, "keygate.peers.test", every)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		poll.Until(t, 5*time.Second, "three keygates counted", func() bool { return p.Count() == 3 })
	}
	cancels[2]()
	poll.Until(t, 5*time.Second, "the stopped keygate forgotten", func() bool { return ps[0].Count() == 2 })
	ns.Shutdown()
	ns.WaitForShutdown()
	// The count is of those heard near the last announcement heard, not
	// near now: with nothing heard, it stays as it was however long.
	ps[0].mu.Lock() // a message delivered before the shutdown may still be handled
	ps[0].now = func() time.Time { return time.Now().Add(time.Hour) }
	ps[0].mu.Unlock()
	if n := ps[0].Count(); n != 2 {
		t.Fatalf("a keygate cut off counts %d, want the 2 it last heard", n)
	}
}
