package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/poll"
)

// countingStore counts the leases taken through it, and those a check
// waited for.
type countingStore struct {
	Store
	all, onCheck atomic.Int64
}

// onCheckPath marks the context of a check, so that a lease taken with it
// is told from one taken in the background.
type onCheckPath struct{}

func (c *countingStore) Lease(ctx context.Context, key string, limit Limit, index, want int64) (int64, int64, error) {
	c.all.Add(1)
	if ctx.Value(onCheckPath{}) != nil {
		c.onCheck.Add(1)
	}
	return c.Store.Lease(ctx, key, limit, index, want)
}

func (c *countingStore) Granted(key string, limit Limit, index int64) (int64, bool) {
	return c.Store.(granter).Granted(key, limit, index)
}

// TestLeasesPerWindow: keys far from their limit (600/1m, used about 30
// times a window on each of two keygates) cost each keygate about one
// lease per key and window once their first windows are past, and no
// check waits for one; the first minute, when every key is new, costs a
// few. Traffic is steady, or in bursts (2 s of every 6, as a load
// balancer's uneven spread may make it), or in rounds (5.2 s of every
// 15.6, as make bench loads its servers in turn: a key's state is kept
// between them). A key used in bursts far apart (4 s of every 24 on each
// keygate), and so dropped while idle, costs about one lease a burst: its
// first, on its first check, is sized as a new key's, and then the
// fleet's budget shows it far from its limit, so that the next covers its
// pace to the window's end; seen briefly, it leases nothing ahead.
func TestLeasesPerWindow(t *testing.T) {
	for _, tc := range []struct {
		traffic  string
		atMost   float64 // leases per key and keygate in a minute after the second
		onChecks float64 // of which a check waited for
	}{{"steady", 1.1, 0}, {"bursty", 1.1, 0}, {"rounds", 1.15, 0}, {"apart", 3.2, 2.7}} {
		t.Run(tc.traffic, func(t *testing.T) {
			perMinute, err := leasesPerMinute(tc.traffic, 1000, 5)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("leases per key and keygate, by minute, and of those taken while a check waited: %v", perMinute)
			for m, got := range perMinute {
				switch {
				case m == 0 && got[0] > 5:
					t.Errorf("minute 1: %.2f leases per key and keygate, want at most 5", got[0])
				case m >= 2 && (got[0] > tc.atMost || got[1] > tc.onChecks):
					t.Errorf("minute %d: %.2f leases per key and keygate (%.2f on the check path), want at most %.1f (%.1f)", m+1, got[0], got[1], tc.atMost, tc.onChecks)
				}
			}
		})
	}
}

// leasesPerMinute drives nkeys keys, each about once a second over two
// keygates sharing a store, on a clock stepped by the traffic, for the
// given minutes, and returns the leases per key and keygate in each
// minute: all, and those a check waited for. traffic is steady, bursty,
// rounds or apart (see TestLeasesPerWindow).
func leasesPerMinute(traffic string, nkeys, minutes int) ([][2]float64, error) {
	c := newClock()
	shared := NewLocalStore()
	var stores [2]*countingStore
	var ls [2]*Limiter
	for i := range ls {
		stores[i] = &countingStore{Store: shared}
		ls[i] = New(Options{Store: stores[i], Now: c.now})
		ls[i].workers.gather = 0 // the clock is stepped, prefetch by prefetch
		ls[i].peers.saw("the other", time.Hour)
	}
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key_%06d", i)
	}
	lim := Limit{600, time.Minute}
	step := time.Second / time.Duration(nkeys)
	ctx := context.WithValue(context.Background(), onCheckPath{}, true)
	begin := c.now()
	var out [][2]float64
	var last [2]int64
	for i := 0; ; i++ {
		now := begin.Add(time.Duration(i) * step)
		c.set(now)
		if m := int(now.Sub(begin) / time.Minute); m == len(out)+1 {
			all := stores[0].all.Load() + stores[1].all.Load()
			check := stores[0].onCheck.Load() + stores[1].onCheck.Load()
			out = append(out, [2]float64{float64(all-last[0]) / float64(2*nkeys), float64(check-last[1]) / float64(2*nkeys)})
			last = [2]int64{all, check}
			if m == minutes {
				return out, nil
			}
		}
		if i%(5*nkeys) == 0 {
			ls[0].Sweep()
			ls[1].Sweep()
		}
		which := (i / nkeys) % 2 // a key goes to each keygate in turn
		switch traffic {
		case "bursty", "rounds": // a turn to each keygate, then one to neither
			turn := int(now.Sub(begin)/slot(traffic)) % 3
			if turn == 0 {
				continue
			}
			which = turn - 1
		case "apart": // 4 s to each keygate, 8 s apart
			turn := int(now.Sub(begin)/(4*time.Second)) % 6
			if turn%3 != 0 {
				continue
			}
			which = turn / 3
		}
		l := ls[which]
		if !l.Allow(ctx, nil, keys[i%nkeys], lim, now).Allowed {
			return nil, fmt.Errorf("%s denied under its limit at %s", keys[i%nkeys], now.Sub(begin))
		}
		l.leases.Wait() // a prefetch lands before the clock moves on
	}
}

// slot is the length of a keygate's turn in bursty traffic: 2 s, or in
// rounds 5.2 s, as make bench's load generator gives each of its three
// servers about 5 s in turn.
func slot(traffic string) time.Duration {
	if traffic == "rounds" {
		return 5200 * time.Millisecond
	}
	return 2 * time.Second
}

// TestCloseHandsBackWhereNeeded: a keygate closing hands back what it
// leased and did not use of a budget the fleet is short of, and keeps
// (costing no write) what nobody will miss.
func TestCloseHandsBackWhereNeeded(t *testing.T) {
	c := newClock()
	st := NewLocalStore()
	a := New(Options{Now: c.now, Store: st})
	short, plenty := Limit{100, time.Hour}, Limit{1000, time.Hour}
	for range 60 { // at a pace that would spend the budget long before the hour ends
		allow(a, "short", short, c.now())
	}
	allow(a, "plenty", plenty, c.now())
	unusedPlenty := a.keys["plenty"].cur.Load().tokens.Load()
	a.Close(context.Background())
	b := New(Options{Now: c.now, Store: st})
	count := func(key string, lim Limit) int64 {
		var n int64
		for range lim.Requests {
			if allow(b, key, lim, c.now()).Allowed {
				n++
			}
		}
		return n
	}
	if n := count("short", short); n != 40 {
		t.Errorf("after the close, %d of short's 40 left could be leased", n)
	}
	if n := count("plenty", plenty); unusedPlenty == 0 || n != 999-unusedPlenty {
		t.Errorf("plenty: %d leased after the close, %d left unused by the first keygate; want %d", n, unusedPlenty, 999-unusedPlenty)
	}
}

// sizingStore records the size of each lease granted through it.
type sizingStore struct {
	Store
	mu  sync.Mutex
	got []int64
}

func (s *sizingStore) Lease(ctx context.Context, key string, limit Limit, index, want int64) (int64, int64, error) {
	got, granted, err := s.Store.Lease(ctx, key, limit, index, want)
	s.mu.Lock()
	s.got = append(s.got, got)
	s.mu.Unlock()
	return got, granted, err
}

func (s *sizingStore) sizes() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// TestBurstLeasesAtItsPace: far from its limit, a key that speeds up
// twenty times mid-window, beyond what its lease ahead holds, leases for
// its new pace to the window's end once it has shown it, not for its
// average over the window: a 20 s burst costs one lease, or two.
func TestBurstLeasesAtItsPace(t *testing.T) {
	c := newClock()
	st := &sizingStore{Store: NewLocalStore()}
	l := New(Options{Store: st, Now: c.now})
	lim := Limit{600, time.Minute}
	_, start := Window("k", lim, c.now()) // the end of the current window: the next starts there
	use := func(from time.Time, n int, every time.Duration) {
		for i := range n {
			c.set(from.Add(time.Duration(i) * every))
			if !allow(l, "k", lim, c.now()).Allowed {
				t.Fatalf("denied at %s", c.now().Sub(start))
			}
			l.leases.Wait()
		}
	}
	use(start, 30, 2*time.Second) // a whole window at 0.5/s
	second := start.Add(time.Minute)
	use(second, 10, 2*time.Second) // the next one, the same for 20 s
	before := len(st.sizes())
	use(second.Add(20*time.Second), 200, 100*time.Millisecond) // then 10/s for 20 s
	// The lease ahead (a quarter of the limit) covers 150; the window's
	// average pace says about 2/s, and leases of about 60.
	if burst := st.sizes()[before:]; len(burst) == 0 || len(burst) > 2 || slices.Max(burst) < 100 {
		t.Fatalf("leases during the burst: %v; want one or two, one sized for its pace to the window's end (at least 100)", burst)
	}
}

// TestPrefetchQueueFull: a prefetch that finds the queue full is left to
// a later check: the key is free to prefetch again and Close does not
// wait for it.
func TestPrefetchQueueFull(t *testing.T) {
	c := newClock()
	l := New(Options{Now: c.now})
	l.workers = newWorkers(1, 1, time.Minute, 0)
	block := make(chan struct{})
	l.workers.run(func() { <-block }, false)
	poll.Until(t, 10*time.Second, "the blocker taken", func() bool { return len(l.workers.work) == 0 })
	l.workers.run(func() {}, false) // the queue is full
	lim := Limit{600, time.Minute}
	for range 100 { // spends the first lease: a prefetch is due
		allow(l, "k", lim, c.now())
	}
	if l.keys["k"].refill.Load() {
		t.Fatal("a prefetch turned away still counts as in flight")
	}
	close(block)
	l.Close(context.Background()) // waits for every prefetch counted in flight
}

// TestShedHandsBackBeyondUse: a keygate holding a lease far beyond its
// use hands the rest back once another keygate reports more than half of
// the window leased, and not before.
func TestShedHandsBackBeyondUse(t *testing.T) {
	c := newClock()
	st := NewLocalStore()
	l := New(Options{Store: st, Now: c.now})
	l.peers.saw("other", time.Hour)
	lim := Limit{1000, time.Hour}
	_, start := Window("k", lim, c.now())
	c.set(start)
	allow(l, "k", lim, c.now()) // seen from the window's start
	ks, _ := l.key("k")
	c.set(start.Add(50 * time.Minute))
	ks.mu.Lock()
	l.leaseNext(ks, ks.cur.Load(), c.now().UnixNano()) // far from the limit: a quarter over two keygates
	ks.mu.Unlock()
	c.set(start.Add(time.Hour))
	allow(l, "k", lim, c.now()) // the window begins on it
	p := ks.cur.Load()
	held := p.tokens.Load()
	if held < 100 {
		t.Fatalf("leased ahead %d, want a quarter of the limit over two keygates", held+1)
	}
	report := func(granted int64) {
		b, _ := json.Marshal(report{From: "other", Interval: time.Second, Keys: []keyReport{{Key: "k", Index: p.index, Granted: granted}}})
		l.receive("me", b)
		l.leases.Wait()
	}
	report(lim.Requests / 2) // half leased: nothing goes back
	if got := p.tokens.Load(); got != held {
		t.Fatalf("at half leased, %d of %d held", got, held)
	}
	report(lim.Requests/2 + 1) // more than half
	kept := p.tokens.Load()
	if kept > 2 {
		t.Fatalf("more than half leased: kept %d of %d, used once in an hour", kept, held)
	}
	if g, _ := st.Granted("k", lim, p.index); g != kept+1 {
		t.Fatalf("the store's grants after the hand-back: %d, want %d (used 1, kept %d)", g, kept+1, kept)
	}
}
