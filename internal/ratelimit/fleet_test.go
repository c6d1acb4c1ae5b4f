package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/fleetclock"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
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
				// The member's share of the demand, spread over the steps
				// without rounding any of it away.
				share := float64(ld.demand) * ld.weights[i] / float64(ld.steps)
				n := int(math.Floor(float64(s+1)*share) - math.Floor(float64(s)*share))
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

// scenario is a fleet, its load and a fault: twice the demand of the
// fleet's bound for four windows of the longest terms, spread by weight.
type scenario struct {
	name    string
	terms   []Limit // each member's
	weights []float64
	skews   []time.Duration // each member's clock's, or none
	// fault befalls the first member's link from a quarter into window 1
	// to halfway into window 2: "stall" (held 300 ms), "slow" (20 ms more
	// latency each way), "unwritable" (held 4 s: past outage_after) or
	// "cut" (closed).
	fault string
}

// outageFault reports whether fault puts a keygate under the outage rule.
func outageFault(fault string) bool { return fault == "unwritable" || fault == "cut" }

// windowResult is what the fleet allowed in one window of the longest
// terms, and the bounds it must keep: at most max always, at least min
// unless the window had a fault.
type windowResult struct {
	start         int64
	allowed       int64
	max, min      int64
	fault, within bool
}

// String is a scenario's windows: allowed/bound, "*" where a fault was.
func results(rs []windowResult) string {
	var b strings.Builder
	for _, r := range rs {
		mark := ""
		if r.fault {
			mark = "*"
		}
		fmt.Fprintf(&b, " %d/%d%s", r.allowed, r.max, mark)
	}
	return b.String()
}

// play runs sc on a fresh NATS server and returns its windows.
func play(t testing.TB, sc scenario) ([]windowResult, []*member) {
	t.Helper()
	ns := natstest.Run(t)
	clock := newFakeClock(time.Now())
	fleet := newFleet(t, ns, fleetOptions{limits: sc.terms, clock: clock, skews: sc.skews})
	longest, bound := sc.terms[0], 0.0
	for _, l := range sc.terms {
		if l.Window > longest.Window {
			longest = l
		}
	}
	for _, l := range sc.terms {
		bound = max(bound, float64(l.Units)*float64(longest.Window)/float64(l.Window))
	}
	steps := 20
	if longest.Window/time.Duration(steps) > time.Second { // steps of at most a second: short windows see every step
		steps = int(longest.Window / time.Second)
	}
	id := "key_" + strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '_'
	}, sc.name)
	var seen int64 // granted as the first member last saw it when its fault began
	faulty := map[int]bool{1: sc.fault != "", 2: sc.fault != ""}
	allowed, _ := run(t, fleet, clock, longest, load{id: id, demand: int64(2 * bound),
		weights: sc.weights, steps: steps, windows: 4, workers: 2, during: func(w, s int) {
			m := fleet[0]
			switch {
			case w == 1 && s == steps/4:
				if st := m.slot.st.Load(); st != nil {
					if cur := st.cur.Load(); cur != nil {
						seen = cur.granted.Load()
					}
				}
				switch sc.fault {
				case "stall":
					m.proxy.Hold()
					time.AfterFunc(300*time.Millisecond, m.proxy.Release)
				case "unwritable":
					m.proxy.Hold()
					time.AfterFunc(4*time.Second, m.proxy.Release)
				case "slow":
					m.proxy.Slow(20 * time.Millisecond)
				case "cut":
					m.proxy.Cut(true)
					natstest.WaitDisconnected(t, m.nc)
				}
			case w == 2 && s == steps/2:
				m.proxy.Slow(0)
				m.proxy.Release()
				if sc.fault == "cut" {
					m.proxy.Cut(false)
					natstest.WaitConnected(t, m.nc)
				}
				// Out of the outage rule before the next window: checks on
				// another budget probe the store once a second.
				poll.Until(t, 10*time.Second, "the outage over", func() bool {
					m.l.Take(context.Background(), nil, "key_probe", Limit{Units: 1 << 30, Window: time.Hour}, 1)
					return !m.l.outage()
				})
			}
		}})
	first, _ := grid(id, int64(longest.Window), clock.now().UnixNano()-3*int64(longest.Window))
	perL := map[int64]int64{}
	for start, n := range allowed {
		s, _ := grid(id, int64(longest.Window), start)
		perL[s] += n
	}
	var rs []windowResult
	peers := int64(len(sc.terms))
	for i := range 4 {
		start := first + int64(i)*int64(longest.Window)
		r := windowResult{start: start, allowed: perL[start], max: int64(bound), fault: faulty[i]}
		if outageFault(sc.fault) && faulty[i] {
			share := longest.Units / peers // a window begun while cut off: nothing granted that it knew of
			if i == 1 {
				share = (longest.Units - seen) / peers
			}
			r.max += share
		}
		r.min = r.max - tolerance(r.max)
		if len(distinct(sc.terms)) > 1 {
			r.min = 0 // mixed terms: only the bound is promised
		}
		r.within = r.allowed <= r.max && (r.fault || r.allowed >= r.min)
		rs = append(rs, r)
	}
	return rs, fleet
}

func distinct(ls []Limit) map[Limit]bool {
	m := map[Limit]bool{}
	for _, l := range ls {
		m[l] = true
	}
	return m
}

func same(n int, l Limit) []Limit {
	ls := make([]Limit, n)
	for i := range ls {
		ls[i] = l
	}
	return ls
}

var (
	balanced3 = []float64{1. / 3, 1. / 3, 1. / 3}
	skewed3   = []float64{.8, .1, .1}
	balanced5 = []float64{.2, .2, .2, .2, .2}
	skewed5   = []float64{.6, .1, .1, .1, .1}
)

// checkScenario plays sc and fails unless every window kept its bounds.
func checkScenario(t *testing.T, sc scenario) {
	t.Helper()
	rs, fleet := play(t, sc)
	t.Logf("%s:%s", sc.name, results(rs))
	if testing.Verbose() {
		for i, m := range fleet {
			st := m.l.Stats()
			t.Logf("  member %d: leases %d, timeouts %d, failures %d, outage units %d, charged %d", i, st.Leases.Load(), st.Timeouts.Load(), st.Failures.Load(), st.OutageUnits.Load(), st.Charged.Load())
		}
	}
	for i, r := range rs {
		if !r.within {
			t.Errorf("%s: window %d allowed %d, want at most %d and, without a fault, at least %d", sc.name, i, r.allowed, r.max, r.min)
		}
	}
}

// TestFleetRules covers each rule once at the shipped lease timeout: 3
// and 5 keygates, balanced and skewed, 10/1m to 1000/1s; a keygate
// stalled, slowed or cut off; mixed terms; clocks 5 s off. The full
// matrix is BenchmarkFleetLimits (make bench).
func TestFleetRules(t *testing.T) {
	for _, sc := range []scenario{
		{name: "3 balanced 100/1m", terms: same(3, Limit{Units: 100, Window: time.Minute}), weights: balanced3},
		{name: "5 skewed 1000/1s", terms: same(5, Limit{Units: 1000, Window: time.Second}), weights: skewed5},
		{name: "3 skewed 10/1m", terms: same(3, Limit{Units: 10, Window: time.Minute}), weights: skewed3},
		{name: "stall", terms: same(3, Limit{Units: 100, Window: time.Minute}), weights: balanced3, fault: "stall"},
		{name: "slow", terms: same(3, Limit{Units: 100, Window: time.Minute}), weights: balanced3, fault: "slow"},
		{name: "unwritable", terms: same(3, Limit{Units: 100, Window: time.Minute}), weights: balanced3, fault: "unwritable"},
		{name: "cut", terms: same(3, Limit{Units: 100, Window: time.Minute}), weights: skewed3, fault: "cut"},
		{name: "mixed 100/10s 100/20s", terms: []Limit{{Units: 100, Window: 10 * time.Second}, {Units: 100, Window: 10 * time.Second}, {Units: 100, Window: 20 * time.Second}}, weights: balanced3},
		{name: "mixed 600/1m 10/1s", terms: []Limit{{Units: 600, Window: time.Minute}, {Units: 10, Window: time.Second}, {Units: 10, Window: time.Second}}, weights: balanced3},
		{name: "skew +5s", terms: same(3, Limit{Units: 100, Window: 10 * time.Second}), weights: balanced3, skews: []time.Duration{5 * time.Second, 0, 0}},
		{name: "skew -5s", terms: same(3, Limit{Units: 100, Window: 10 * time.Second}), weights: balanced3, skews: []time.Duration{-5 * time.Second, 0, 0}},
	} {
		t.Run(sc.name, func(t *testing.T) { checkScenario(t, sc) })
	}
}

// TestStallDeniesNothing: a key in steady use rides out a stall of the
// store shorter than half a lease's cover on the units it holds.
func TestStallDeniesNothing(t *testing.T) {
	ns := natstest.Run(t)
	clock := newFakeClock(time.Now())
	lim := Limit{Units: 1_000_000, Window: time.Hour}
	m := newFleet(t, ns, fleetOptions{limits: []Limit{lim}, clock: clock})[0]
	windowStart(clock, "key_steady", lim)
	take := func() Result {
		clock.advance(10 * time.Millisecond) // 100 takes a second
		return m.l.Take(context.Background(), &m.slot, "key_steady", lim, 1)
	}
	for range 500 { // five seconds of steady use: leases ahead of need
		if r := take(); !r.Allowed {
			t.Fatalf("denied before the stall: %+v", r)
		}
	}
	poll.Until(t, 5*time.Second, "no lease in flight", func() bool { return m.slot.st.Load().flight.Load() == nil })
	// The worst moment for a stall: as the next lease is asked for, when
	// what is held is down to the low water.
	m.proxy.Hold()
	defer m.proxy.Release()
	for m.slot.st.Load().flight.Load() == nil {
		if r := take(); !r.Allowed {
			t.Fatalf("denied before the next lease was asked for: %+v", r)
		}
	}
	for i := range 45 { // 450 ms of use while the store does not answer
		if r := take(); !r.Allowed {
			t.Fatalf("take %d of the stall denied: %+v", i, r)
		}
	}
}
