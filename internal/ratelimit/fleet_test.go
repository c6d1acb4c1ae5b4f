package ratelimit

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/fleetclock"
	"github.com/keygate/keygate/internal/natstest"
)

// member is one keygate of a test fleet: its limiter, on a NATS
// connection of its own through a proxy that the test can slow, stall or
// cut.
type member struct {
	l     *Limiter
	proxy *natstest.Proxy
	nc    *nats.Conn
	lim   Limit // its terms for the key
	slot  Slot
}

// fleetOptions shape a test fleet.
type fleetOptions struct {
	limits []Limit // each member's terms; len is the fleet's size
	clock  *fakeClock
	// skews, if set, offset each member's own clock from clock; the
	// members then read the fleet's clock (fleetclock), as keygate does.
	skews []time.Duration
}

// newFleet starts a fleet on one NATS server, at the shipped lease
// timeout and outage delay.
func newFleet(t testing.TB, ns *server.Server, o fleetOptions) []*member {
	t.Helper()
	var fleet []*member
	for i, lim := range o.limits {
		p := natstest.NewProxy(t, ns.Addr().String())
		nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.Name(fmt.Sprintf("keygate-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx := natstest.Context(t)
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "limits"})
		if err != nil {
			t.Fatal(err)
		}
		n := int64(len(o.limits))
		now := o.clock.now
		if o.skews != nil {
			skew := o.skews[i]
			fc := fleetclock.New(kv, func() time.Time { return o.clock.now().Add(skew) }, nil)
			if err := fc.Measure(ctx); err != nil {
				t.Fatal(err)
			}
			now = fc.Now
		}
		l := New(Options{Store: NewKVStore(kv), Now: now, Online: nc.IsConnected, Peers: func() int64 { return n }})
		t.Cleanup(func() { l.Close(context.Background()) })
		fleet = append(fleet, &member{l: l, proxy: p, nc: nc, lim: lim})
	}
	return fleet
}

// load is demand on a fleet: units a window, spread over the members by
// weight, sent in steps, each step's takes at one reading of the clock.
type load struct {
	id      string
	demand  int64     // takes of one unit a window, over the fleet
	weights []float64 // one per member
	steps   int       // per window
	windows int
	workers int // goroutines per member
	// during, if set, is called at the start of each step.
	during func(window, step int)
}

// run drives the load over consecutive windows of lim (the first
// member's terms) from the clock's window start, and returns what the
// fleet allowed in each window, by the window's start as the results gave
// it, and the window's limit.
func run(t testing.TB, fleet []*member, c *fakeClock, lim Limit, ld load) (allowed, limits map[int64]int64) {
	t.Helper()
	windowStart(c, ld.id, lim)
	first := c.now()
	allowed, limits = map[int64]int64{}, map[int64]int64{}
	var mu sync.Mutex
	stepLen := lim.Window / time.Duration(ld.steps)
	for w := range ld.windows {
		for s := range ld.steps {
			c.set(first.Add(time.Duration(w)*lim.Window + time.Duration(s)*stepLen))
			if ld.during != nil {
				ld.during(w, s)
			}
			var wg sync.WaitGroup
			for i, m := range fleet {
				n := int(math.Round(float64(ld.demand) * ld.weights[i] / float64(ld.steps)))
				for g := range ld.workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for k := g; k < n; k += ld.workers {
							r := m.l.Take(context.Background(), &m.slot, ld.id, m.lim, 1)
							mu.Lock()
							if r.Allowed {
								allowed[r.Window]++
							}
							if r.Limit > 0 && r.Window != 0 {
								limits[r.Window] = r.Limit
							}
							mu.Unlock()
						}
					}()
				}
			}
			wg.Wait()
		}
	}
	return allowed, limits
}

// tolerance is what a window may fall short of its limit by when demand
// exceeds it: max(2 %, 2).
func tolerance(limit int64) int64 { return max(limit/50, 2) }

// TestFleetExact: keygates racing one key allow, in every window, at most
// the limit, and at least the limit minus the tolerance when demand is
// twice the limit: 3 and 5 keygates, balanced and skewed, 10/1m to 1000/1s.
func TestFleetExact(t *testing.T) {
	for _, c := range []struct {
		name    string
		lim     Limit
		weights []float64
	}{
		{"3 balanced 100/1m", Limit{100, time.Minute}, []float64{1. / 3, 1. / 3, 1. / 3}},
		{"5 skewed 1000/1s", Limit{1000, time.Second}, []float64{.6, .1, .1, .1, .1}},
		{"3 skewed 10/1m", Limit{10, time.Minute}, []float64{.8, .1, .1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := natstest.Run(t)
			clock := newFakeClock(time.Now())
			limits := make([]Limit, len(c.weights))
			for i := range limits {
				limits[i] = c.lim
			}
			fleet := newFleet(t, ns, fleetOptions{limits: limits, clock: clock})
			allowed, _ := run(t, fleet, clock, c.lim, load{id: "key_exact", demand: 2 * c.lim.Units, weights: c.weights,
				steps: 20, windows: 3, workers: 2})
			checkWindows(t, allowed, c.lim.Units, nil)
		})
	}
}

// checkWindows fails unless every window allowed at most limit, and at
// least limit - tolerance unless excused.
func checkWindows(t testing.TB, allowed map[int64]int64, limit int64, excused map[int64]bool) {
	t.Helper()
	if len(allowed) == 0 {
		t.Fatal("nothing was allowed")
	}
	t.Logf("allowed by window: %v (limit %d)", allowed, limit)
	for w, n := range allowed {
		switch {
		case n > limit:
			t.Errorf("window %d allowed %d of a limit of %d", w, n, limit)
		case n < limit-tolerance(limit) && !excused[w]:
			t.Errorf("window %d allowed %d of a limit of %d with twice the demand", w, n, limit)
		}
	}
}

// TestFleetFaults: a stalled, slowed or cut keygate, at the shipped lease
// timeout, never makes the fleet allow more than the limit, but for what
// the outage rule allows a keygate cut off, (limit - granted) / keygates.
func TestFleetFaults(t *testing.T) {
	lim := Limit{100, time.Minute}
	for _, c := range []struct {
		name string
		// fault is applied to the first member at window 1's step 5 and
		// lifted at window 2's step 10; those windows may fall short of
		// the limit.
		fault, lift func(m *member)
		cut         bool
	}{
		{"stalled 300 ms", func(m *member) { m.proxy.Hold(); time.AfterFunc(300*time.Millisecond, m.proxy.Release) }, func(*member) {}, false},
		{"slow 20 ms", func(m *member) { m.proxy.Slow(20 * time.Millisecond) }, func(m *member) { m.proxy.Slow(0) }, false},
		{"cut", func(m *member) { m.proxy.Cut(true) }, func(m *member) { m.proxy.Cut(false) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := natstest.Run(t)
			clock := newFakeClock(time.Now())
			fleet := newFleet(t, ns, fleetOptions{limits: []Limit{lim, lim, lim}, clock: clock})
			var seen int64 // what the fleet had granted when the first member was cut off
			allowed, _ := run(t, fleet, clock, lim, load{id: "key_faults", demand: 2 * lim.Units, weights: []float64{.5, .25, .25},
				steps: 20, windows: 4, workers: 2, during: func(w, s int) {
					switch {
					case w == 1 && s == 5:
						if w := fleet[0].slot.st.Load().cur.Load(); w != nil {
							seen = w.granted.Load()
						}
						c.fault(fleet[0])
						if c.cut {
							natstest.WaitDisconnected(t, fleet[0].nc)
						}
					case w == 2 && s == 10:
						c.lift(fleet[0])
						if c.cut {
							natstest.WaitConnected(t, fleet[0].nc)
						}
					}
				}})
			starts := sortedKeys(allowed)
			for i, w := range starts {
				limit := lim.Units
				if c.cut && (i == 1 || i == 2) {
					share := lim.Units / 3 // a window begun while cut off: nothing granted that it knew of
					if i == 1 {
						share = (lim.Units - seen) / 3
					}
					limit += share
				}
				if n := allowed[w]; n > limit {
					t.Errorf("window %d allowed %d, at most %d", i, n, limit)
				} else if i != 1 && i != 2 && n < lim.Units-tolerance(lim.Units) {
					t.Errorf("window %d, without a fault, allowed %d", i, n)
				}
			}
			t.Logf("allowed by window: %v", allowed)
		})
	}
}

func sortedKeys(m map[int64]int64) []int64 {
	var ks []int64
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestFleetMixedTerms: keygates with different limits or windows for one
// key (a rolling change of default_rate_limit) never reset each other:
// in any window of the longest length L, together they allow at most
// max(limit × L / window) of their terms, and each window at most its own
// limit.
func TestFleetMixedTerms(t *testing.T) {
	for _, c := range []struct {
		name  string
		terms []Limit
		steps int
	}{
		{"100/10s and 100/20s", []Limit{{100, 10 * time.Second}, {100, 10 * time.Second}, {100, 20 * time.Second}}, 40},
		{"600/1m and 10/1s", []Limit{{600, time.Minute}, {10, time.Second}, {10, time.Second}}, 120},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := natstest.Run(t)
			clock := newFakeClock(time.Now())
			fleet := newFleet(t, ns, fleetOptions{limits: c.terms, clock: clock})
			var longest Limit
			bound := 0.0
			for _, l := range c.terms {
				if l.Window > longest.Window {
					longest = l
				}
			}
			for _, l := range c.terms {
				bound = max(bound, float64(l.Units)*float64(longest.Window)/float64(l.Window))
			}
			// The driver steps on the longest window; demand is twice the bound.
			allowed, limits := run(t, fleet, clock, longest, load{id: "key_mixed", demand: int64(2 * bound),
				weights: []float64{1. / 3, 1. / 3, 1. / 3}, steps: c.steps, windows: 3, workers: 2})
			perL := map[int64]int64{}
			for start, n := range allowed {
				if n > limits[start] {
					t.Errorf("window %d allowed %d of its limit %d", start, n, limits[start])
				}
				s, _ := grid("key_mixed", int64(longest.Window), start)
				perL[s] += n
			}
			for s, n := range perL {
				if float64(n) > bound {
					t.Errorf("the %s window from %d allowed %d, at most %v", longest.Window, s, n, bound)
				}
			}
			t.Logf("allowed by window of %s: %v (bound %v)", longest.Window, perL, bound)
		})
	}
}

// TestFleetSkew: a keygate whose clock is 5 s ahead (or behind) reads the
// fleet's clock, so it neither takes a window early nor starves the
// others: every window allows the limit, within the tolerance.
func TestFleetSkew(t *testing.T) {
	lim := Limit{100, 10 * time.Second}
	for _, skew := range []time.Duration{5 * time.Second, -5 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			ns := natstest.Run(t)
			clock := newFakeClock(time.Now())
			fleet := newFleet(t, ns, fleetOptions{limits: []Limit{lim, lim, lim}, clock: clock, skews: []time.Duration{skew, 0, 0}})
			allowed, _ := run(t, fleet, clock, lim, load{id: "key_skew", demand: 2 * lim.Units, weights: []float64{.5, .25, .25},
				steps: 20, windows: 4, workers: 2})
			checkWindows(t, allowed, lim.Units, nil)
		})
	}
}
