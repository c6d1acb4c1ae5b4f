package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
)

// fleet is n Limiters sharing one KV bucket and sync subject on a real
// NATS server, each on a connection of its own, all on a clock that runs
// scale times faster than real time (so that a 1m window passes in a
// second).
type fleet struct {
	limiters []*Limiter
	conns    []*nats.Conn
	now      func() time.Time
}

func newFleet(t testing.TB, n int, scale float64, online func() bool) *fleet {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	begin := time.Now()
	f := &fleet{now: func() time.Time {
		return begin.Add(time.Duration(float64(time.Since(begin)) * scale))
	}}
	for i := range n {
		nc, js := natstest.Connect(t, ns)
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "limits"})
		if err != nil {
			t.Fatal(err)
		}
		l := New(Options{Store: NewKVStore(kv), Now: f.now, LeaseTimeout: time.Second, Online: online})
		if err := l.Sync(ctx, nc, "keygate.sync.limits", 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(context.Background()) })
		f.limiters = append(f.limiters, l)
		f.conns = append(f.conns, nc)
		_ = i
	}
	waitPeers(t, f.limiters)
	return f
}

// waitPeers waits until every limiter of ls has heard from every other.
func waitPeers(t testing.TB, ls []*Limiter) {
	t.Helper()
	poll.Until(t, 10*time.Second, fmt.Sprintf("every limiter knowing of %d keygates", len(ls)), func() bool {
		for _, l := range ls {
			if l.Peers() != int64(len(ls)) {
				return false
			}
		}
		return true
	})
}

// traffic says how requests are spread over the fleet: the share of each
// keygate.
type traffic struct {
	name   string
	shares func(n int) []float64
}

var (
	balanced = traffic{"balanced", func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = 1 / float64(n)
		}
		return s
	}}
	// skewed sends 90 % to one keygate and spreads the rest.
	skewed = traffic{"skewed", func(n int) []float64 {
		s := make([]float64, n)
		s[0] = 0.9
		for i := 1; i < n; i++ {
			s[i] = 0.1 / float64(n-1)
		}
		return s
	}}
	// oneOnly sends everything to one keygate; the others hold nothing.
	oneOnly = traffic{"one", func(n int) []float64 {
		s := make([]float64, n)
		s[0] = 1
		return s
	}}
)

// windowCounts drives demand times the limit through the fleet for
// `windows` whole windows of key and returns the requests allowed in each
// whole window.
func (f *fleet) windowCounts(key string, lim Limit, tr traffic, demand float64, windows int, scale float64) []int64 {
	return f.phaseCounts(key, lim, []phase{{tr, demand, windows}}, scale)
}

// phase is traffic asking for demand times the limit for some windows.
type phase struct {
	traffic traffic
	demand  float64
	windows int
}

// phaseCounts drives the phases through the fleet, one after the other
// from the next whole window of key, and returns the requests allowed in
// each whole window.
func (f *fleet) phaseCounts(key string, lim Limit, phases []phase, scale float64) []int64 {
	idx0, _ := Window(key, lim, f.now())
	first := idx0 + 1 // the first whole window
	var at []phase    // by window, from first
	for _, ph := range phases {
		for range ph.windows {
			at = append(at, ph)
		}
	}
	last := first + int64(len(at)) - 1
	counts := map[int64]int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range f.limiters {
		for range 4 {
			wg.Go(func() {
				var slot Slot
				next := time.Now()
				for {
					now := f.now()
					idx, _ := Window(key, lim, now)
					if idx > last {
						return
					}
					ph := at[max(idx-first, 0)]
					// Requests per real second for this keygate, over 4 goroutines.
					rate := ph.demand * float64(lim.Requests) * ph.traffic.shares(len(f.limiters))[i] / lim.Window.Seconds() * scale
					if rate == 0 {
						next = time.Now().Add(time.Millisecond)
						time.Sleep(time.Millisecond)
						continue
					}
					r := f.limiters[i].Allow(context.Background(), &slot, key, lim, now)
					if r.Allowed && idx >= first {
						mu.Lock()
						counts[idx]++
						mu.Unlock()
					}
					next = next.Add(time.Duration(float64(time.Second) * 4 / rate))
					time.Sleep(time.Until(next))
				}
			})
		}
	}
	wg.Wait()
	out := make([]int64, 0, len(at))
	for idx := first; idx <= last; idx++ {
		out = append(out, counts[idx])
	}
	return out
}

// bounds are the tolerances: at most limit + max(1 %, 2), and
// when demand exceeds the limit, at least limit - max(2 %, 2).
func bounds(limit int64) (lo, hi int64) {
	return limit - max(limit*2/100, 2), limit + max(limit/100, 2)
}

type fleetCase struct {
	sidecars int
	traffic  traffic
	limit    Limit
	scale    float64
}

func (c fleetCase) String() string {
	return fmt.Sprintf("%d keygates, %s, %d/%s", c.sidecars, c.traffic.name, c.limit.Requests, c.limit.Window)
}

// TestFleetLimitHolds: three keygates on one NATS, traffic balanced or
// skewed, asking for twice the limit: each whole window allows the limit
// within the tolerances.
func TestFleetLimitHolds(t *testing.T) {
	for _, c := range []fleetCase{
		{3, balanced, Limit{100, time.Second}, 1},
		{3, skewed, Limit{100, time.Second}, 1},
		{3, oneOnly, Limit{10, time.Minute}, 60},
	} {
		t.Run(c.String(), func(t *testing.T) {
			f := newFleet(t, c.sidecars, c.scale, nil)
			lo, hi := bounds(c.limit.Requests)
			got := f.windowCounts(fmt.Sprintf("key_%d", c.sidecars), c.limit, c.traffic, 2, 3, c.scale)
			for i, n := range got {
				if n < lo || n > hi {
					t.Errorf("window %d allowed %d, want %d..%d (all: %v)", i, n, lo, hi, got)
				}
			}
		})
	}
}

// TestFarKeyTurnsContended: a key far from its limit, whose keygates
// lease ahead beyond their use, then asked for twice the limit, mostly
// or only through one keygate: the others hand back what they hold
// beyond their use, and the windows from the turn on allow the limit
// within the tolerances.
func TestFarKeyTurnsContended(t *testing.T) {
	lim := Limit{1000, time.Second}
	for _, tr := range []traffic{oneOnly, skewed} {
		t.Run(tr.name, func(t *testing.T) {
			f := newFleet(t, 3, 1, nil)
			lo, hi := bounds(lim.Requests)
			got := f.phaseCounts("k", lim, []phase{{balanced, 0.1, 3}, {tr, 2, 3}}, 1)
			for i, n := range got[3:] {
				if n < lo || n > hi {
					t.Errorf("window %d after the turn allowed %d, want %d..%d (all: %v)", i, n, lo, hi, got)
				}
			}
		})
	}
}

// TestRemainingIsFleetWide: what one keygate used shows in another's
// remaining count, once they have synced.
func TestRemainingIsFleetWide(t *testing.T) {
	f := newFleet(t, 2, 1, nil)
	lim := Limit{Requests: 100, Window: time.Hour}
	a, b := f.limiters[0], f.limiters[1]
	for range 30 {
		if !allow(a, "k", lim, f.now()).Allowed {
			t.Fatal("denied under the limit")
		}
	}
	// b's first request leases; once a's report arrives, b counts a's
	// 30 requests and nothing else.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := allow(b, "k", lim, f.now())
		used := 30 + (lim.Requests - r.Remaining - 30) // what b thinks the fleet used
		if r.Remaining == lim.Requests-30-countAllowed(b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b reports %d remaining (fleet used %d), want %d", r.Remaining, used, lim.Requests-30-countAllowed(b))
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// countAllowed is how many requests l has allowed for "k" in its window.
func countAllowed(l *Limiter) int64 {
	ks, _ := l.key("k")
	p := ks.cur.Load()
	return p.mine.Load() - p.tokens.Load()
}

// TestRestartKeepsWindow: a keygate that starts afresh on the same store
// finds the window's budget spent, and one that closes hands back what it
// leased and did not use.
func TestRestartKeepsWindow(t *testing.T) {
	f := newFleet(t, 1, 1, nil)
	lim := Limit{Requests: 50, Window: time.Hour}
	a := f.limiters[0]
	for range 50 {
		allow(a, "k", lim, f.now())
	}
	kv := a.store
	restarted := New(Options{Store: kv, Now: f.now})
	if r := allow(restarted, "k", lim, f.now()); r.Allowed {
		t.Fatalf("after a restart the window's budget is whole again: %+v", r)
	}
	c := New(Options{Store: kv, Now: f.now})
	allow(c, "k2", lim, f.now()) // leases some of k2's budget
	c.Close(context.Background())
	d := New(Options{Store: kv, Now: f.now})
	n := 0
	for range 100 {
		if allow(d, "k2", lim, f.now()).Allowed {
			n++
		}
	}
	if n != 49 {
		t.Fatalf("after a keygate closed, another got %d of the 49 left", n)
	}
}

// TestFleetOutage: when NATS goes away, each keygate allows the limit
// divided by the keygates it knew of, so the fleet stays within it.
func TestFleetOutage(t *testing.T) {
	var down sync.Map // limiter index -> true once offline
	online := func(i int) func() bool {
		return func() bool { _, off := down.Load(i); return !off }
	}
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	var ls []*Limiter
	for i := range 3 {
		nc, js := natstest.Connect(t, ns)
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "limits"})
		if err != nil {
			t.Fatal(err)
		}
		l := New(Options{Store: NewKVStore(kv), Online: online(i)})
		if err := l.Sync(ctx, nc, "sync", 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	waitPeers(t, ls)
	for i := range ls {
		down.Store(i, true)
	}
	lim := Limit{Requests: 90, Window: time.Hour}
	var total []int
	for _, l := range ls {
		n := 0
		for range 100 {
			if allow(l, "k", lim, time.Now()).Allowed {
				n++
			}
		}
		total = append(total, n)
	}
	sort.Ints(total)
	if fmt.Sprint(total) != "[30 30 30]" {
		t.Fatalf("offline, each keygate allowed %v of 90", total)
	}
}

// TestReportsCarryEntries: a keygate that has seen another's report of a
// key's budget entry leases on it at once, without reading the entry.
func TestReportsCarryEntries(t *testing.T) {
	f := newFleet(t, 2, 1, nil)
	a, b := f.limiters[0], f.limiters[1]
	sa, sb := a.store.(*KVStore), b.store.(*KVStore)
	lim := Limit{1000, time.Hour}
	allow(b, "k", lim, f.now()) // b knows the key; its entry is at b's write
	allow(a, "k", lim, f.now()) // a reads it, then writes
	rev, _, _ := sa.Seen("k")
	poll.Until(t, 10*time.Second, "b learning a's entry from its reports", func() bool {
		got, _, _ := sb.Seen("k")
		return got == rev
	})
	writes, reads := sb.Stats()
	ks, _ := b.key("k")
	ks.mu.Lock()
	b.lease(context.Background(), ks, ks.cur.Load(), f.now().UnixNano())
	ks.mu.Unlock()
	w, r := sb.Stats()
	if w-writes != 1 || r != reads {
		t.Errorf("b's lease after a's report: %d writes and %d reads, want 1 and 0", w-writes, r-reads)
	}
}

// TestReportsDoNotEcho: what a keygate only learned from another's
// report it does not report again; what it leases itself it does.
func TestReportsDoNotEcho(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	lim := Limit{1000, time.Hour}
	allow(l, "k", lim, c.now())
	sent := &sentReports{m: map[string]reported{}}
	if r := l.reports("me", time.Second, sent); len(r[0].Keys) != 1 {
		t.Fatalf("first report: %+v", r)
	}
	ks, _ := l.key("k")
	p := ks.cur.Load()
	other, _ := json.Marshal(report{From: "other", Interval: time.Second, Keys: []keyReport{{Key: "k", Index: p.index, Granted: p.granted.Load() + 100, Unspent: 50}}})
	l.receive("me", other)
	if r := l.reports("me", time.Second, sent); len(r[0].Keys) != 0 {
		t.Fatalf("echoed another keygate's report: %+v", r[0].Keys)
	}
	ks.mu.Lock()
	l.lease(context.Background(), ks, p, c.now().UnixNano())
	ks.mu.Unlock()
	if r := l.reports("me", time.Second, sent); len(r[0].Keys) != 1 || r[0].Keys[0].Granted != p.granted.Load() {
		t.Fatalf("after its own lease: %+v", r)
	}
}

// TestReportsLeasesAhead: a lease of the next window is reported (with
// the budget's entry it changed), so that the others' leases ahead are
// not refused on the entry they saw before, and, once that window has
// begun, its unused requests, so that the others' remaining counts hold
// them before this keygate's first check in it.
func TestReportsLeasesAhead(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	lim := Limit{1000, time.Hour}
	allow(l, "k", lim, c.now())
	sent := &sentReports{m: map[string]reported{}}
	l.reports("me", time.Second, sent)
	if r := l.reports("me", time.Second, sent); len(r[0].Keys) != 0 {
		t.Fatalf("reported again with nothing new: %+v", r[0].Keys)
	}
	ks, _ := l.key("k")
	ks.mu.Lock()
	l.leaseNext(ks, ks.cur.Load(), c.now().UnixNano())
	ks.mu.Unlock()
	if ks.next.Load() == nil {
		t.Fatal("nothing leased ahead")
	}
	if r := l.reports("me", time.Second, sent); len(r[0].Keys) != 1 {
		t.Fatalf("after a lease ahead: %+v", r[0].Keys)
	}
	// Once that window has begun, with no check here yet, what is leased
	// ahead is reported as this keygate's unused requests in it.
	np := ks.next.Load()
	c.set(time.Unix(0, np.start))
	r := l.reports("me", time.Second, sent)
	if len(r[0].Keys) != 1 || r[0].Keys[0].Index != np.index || r[0].Keys[0].Unspent != np.tokens.Load() {
		t.Fatalf("the window leased ahead begun: %+v, want window %d with %d unused", r[0].Keys, np.index, np.tokens.Load())
	}
}

// TestReportStep: a key's unused count is reported again when it moves by
// 1 % of the limit, or, while the fleet has leased at most a quarter of
// the window's budget, by 5 % of the limit spread over the other
// keygates.
func TestReportStep(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	lim := Limit{1000, time.Hour}
	allow(l, "k", lim, c.now())
	ks, _ := l.key("k")
	p := ks.cur.Load()
	p.granted.Store(250)
	if got := l.reportStep(ks, p); got != 50 {
		t.Errorf("a quarter leased, alone: step %d, want 50", got)
	}
	for _, id := range []string{"b", "c", "d"} {
		l.peers.saw(id, time.Hour)
	}
	if got := l.reportStep(ks, p); got != 16 {
		t.Errorf("a quarter leased, 4 keygates: step %d, want 16 (5 %% over 3 others)", got)
	}
	p.granted.Store(251)
	if got := l.reportStep(ks, p); got != 10 {
		t.Errorf("more than a quarter leased: step %d, want 10 (1 %%)", got)
	}
	small := Limit{10, time.Hour}
	allow(l, "s", small, c.now())
	ks, _ = l.key("s")
	if got := l.reportStep(ks, ks.cur.Load()); got != 1 {
		t.Errorf("limit 10: step %d, want 1", got)
	}
}

// TestReportsForgetSwept: what a keygate last reported of a key goes once
// the key is swept.
func TestReportsForgetSwept(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	sent := &sentReports{m: map[string]reported{}}
	allow(l, "k", Limit{600, time.Minute}, c.now())
	l.reports("me", time.Second, sent)
	if _, ok := sent.m["k"]; !ok {
		t.Fatal("a key leased here was not reported")
	}
	c.set(c.now().Add(time.Minute))
	l.Sweep()
	l.reports("me", time.Second, sent)
	if len(sent.m) != 0 {
		t.Fatalf("%d reports kept after the key was swept", len(sent.m))
	}
}
