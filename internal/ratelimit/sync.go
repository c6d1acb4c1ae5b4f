package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keygate/keygate/internal/shrink"
	"github.com/keygate/keygate/internal/tick"
)

// report is what a keygate tells the others every sync interval: for
// each key whose leases here changed (it leased more, or by a step its
// leased requests not used yet, see reportStep), those and the fleet's
// grants it saw. An empty report says it is alive. What a keygate only
// learned from the others' reports it does not send again.
type report struct {
	From     string        `json:"from"`
	Interval time.Duration `json:"interval_ns"`
	Keys     []keyReport   `json:"keys,omitempty"`
}

type keyReport struct {
	Key     string `json:"key"`
	Index   int64  `json:"index"`
	Granted int64  `json:"granted"`
	Unspent int64  `json:"unspent"`
	// Rev and Budget are the key's budget entry as the sender last saw
	// it, when that changed since its last report: the others lease on it
	// without reading it first.
	Rev    uint64  `json:"rev,omitempty"`
	Budget *budget `json:"budget,omitempty"`
}

// sharer is a Store whose entries keygates pass on in their reports.
type sharer interface {
	// Seen returns key's entry as this keygate last wrote, read or
	// learned it.
	Seen(key string) (rev uint64, b budget, ok bool)
	// Learn records key's entry at rev as another keygate saw it, if
	// newer than the one seen here.
	Learn(key string, rev uint64, b budget)
}

// sentReports is what a keygate last reported of each key.
type sentReports struct {
	m     map[string]reported
	peak  int    // for shrink.Map
	swept uint64 // Limiter.swept when swept keys were last dropped from m
}

// reported is what a keygate last reported of a key.
type reported struct {
	ks                   *keyState // the state reported: once swept, the entry goes
	index, mine, unspent int64     // window; leased here in it and the next (leased); not used yet
	rev                  uint64
}

// maxKeysPerReport keeps a report's message well below NATS's payload
// limit (about 100 bytes a key).
const maxKeysPerReport = 2000

// Sync shares this keygate's unspent leases with the other keygates on
// subject every interval, and reads theirs, until ctx ends or Close. The
// number of keygates heard from sets the share each takes of a limit
// when the Store cannot be reached.
func (l *Limiter) Sync(ctx context.Context, nc *nats.Conn, subject string, interval time.Duration) error {
	id := newID()
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) { l.receive(id, m.Data) })
	if err != nil {
		return err
	}
	sent := &sentReports{m: map[string]reported{}}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.bg, cancel) // Close stops it too
	go func() {
		defer func() { _ = sub.Unsubscribe() }()
		defer stop()
		defer cancel()
		tick.Every(ctx, interval, func() {
			if nc.IsConnected() { // through an outage, the last count holds
				l.peers.expire()
			}
			for _, r := range l.reports(id, interval, sent) {
				b, _ := json.Marshal(r)
				if err := nc.Publish(subject, b); err != nil {
					l.log.Debug("rate-limit sync", "err", err)
				}
			}
		})
	}()
	return nil
}

// reports are the reports to send now: keys whose lease changed since
// the last ones (sent remembers), in messages of bounded size.
func (l *Limiter) reports(id string, interval time.Duration, sent *sentReports) []report {
	now := l.now().UnixNano()
	r := report{From: id, Interval: interval}
	var out []report
	sh, share := l.store.(sharer)
	l.syncBuf = l.states(l.syncBuf)
	defer clear(l.syncBuf) // keep no swept state alive
	for _, ks := range l.syncBuf {
		p := ks.cur.Load()
		if p != nil && now >= p.end {
			p = ks.next.Load() // begun on a lease ahead, with no check here yet
		}
		if p == nil || p.local.Load() || now < p.start || now >= p.end {
			delete(sent.m, ks.key)
			continue
		}
		st := reported{ks: ks, index: p.index, mine: leased(ks, p), unspent: max(p.tokens.Load(), 0)}
		last, ok := sent.m[ks.key]
		// A key is reported when it leased more here (or in a new
		// window), or its unspent count moved by a step (reportStep).
		if ok && last.index == st.index && last.mine == st.mine && abs(last.unspent-st.unspent) < l.reportStep(ks, p) {
			continue
		}
		var b budget
		var seen bool
		if share {
			st.rev, b, seen = sh.Seen(ks.key)
		}
		sent.m[ks.key] = st
		kr := keyReport{Key: ks.key, Index: p.index, Granted: p.granted.Load(), Unspent: st.unspent}
		if seen && st.rev != last.rev {
			kr.Rev, kr.Budget = st.rev, &b
		}
		r.Keys = append(r.Keys, kr)
		if len(r.Keys) == maxKeysPerReport {
			out = append(out, r)
			r = report{From: id, Interval: interval}
		}
	}
	if n := l.swept.Load(); n != sent.swept { // keys were dropped since the last look
		sent.swept = n
		for k, st := range sent.m {
			if st.ks.dead.Load() {
				delete(sent.m, k)
			}
		}
	}
	sent.m = shrink.Map(sent.m, &sent.peak)
	return append(out, r)
}

// leased is what this keygate has leased of the key's budget in p's
// window and in the next: a lease ahead changes the budget's entry too,
// and the others learn of it from the report, rather than from a
// compare-and-set refused on the entry they saw before.
func leased(ks *keyState, p *period) int64 {
	n := p.mine.Load()
	if np := ks.next.Load(); np != nil && np.index == p.index+1 {
		n += np.mine.Load()
	}
	return n
}

// reportStep is how far a key's unspent count here moves before it is
// reported again: 1 % of the limit (at least 1), so that the others'
// remaining counts are that close, for a fraction of the traffic. While
// the fleet has leased at most a quarter of the window's budget, at least
// three quarters of it remain, and the step is 5 % of the limit spread
// over the other keygates: their remaining counts are that close in all,
// for a third of the reports of a key in steady use.
func (l *Limiter) reportStep(ks *keyState, p *period) int64 {
	step := ks.limit.Requests / 100
	if l.quarter(ks, p) {
		step = max(step, ks.limit.Requests/(20*max(l.peers.count()-1, 1)))
	}
	return max(step, 1)
}

// receive applies another keygate's report.
func (l *Limiter) receive(self string, data []byte) {
	var r report
	if json.Unmarshal(data, &r) != nil || r.From == "" || r.From == self {
		return
	}
	l.peers.saw(r.From, r.Interval)
	sh, share := l.store.(sharer)
	f, forgets := l.store.(forgetter)
	now := l.now().UnixNano()
	for _, k := range r.Keys {
		ks, ok := l.key(k.Key)
		if !ok {
			continue
		}
		learned := share && k.Rev != 0 && k.Budget != nil
		if learned {
			sh.Learn(ks.key, k.Rev, *k.Budget)
		}
		if p := ks.cur.Load(); p != nil && p.index == k.Index {
			if k.Granted > p.granted.Load() && !learned && forgets {
				// Another keygate has leased since this one last saw the
				// budget: its next lease reads the entry first, rather
				// than write on a stale one and be refused.
				f.Forget(ks.key)
			}
			raise(&p.granted, k.Granted)
			ks.others.set(r.From, k.Index, k.Unspent)
		} else if np := ks.next.Load(); np != nil && np.index == k.Index {
			// Leased ahead here, and begun there (its first check here
			// makes it current).
			raise(&np.granted, k.Granted)
			if now >= np.start {
				// Begun here too: the old window's reports are moot. (A
				// sender whose clock runs ahead is heard again later.)
				ks.others.set(r.From, k.Index, k.Unspent)
			}
		}
		l.shed(ks, k.Index, now)
	}
}

// othersView sums the unspent leases other keygates reported for a key's
// window. It keeps one small entry per keygate (a fleet is a few, and a
// map per key would be most of a sidecar's heap with 10,000 keys in use).
type othersView struct {
	index atomic.Int64
	sum   atomic.Int64
	mu    sync.Mutex
	by    []unspentBy
}

type unspentBy struct {
	from    string
	unspent int64
}

// unspent is the sum reported for window index.
func (o *othersView) unspent(index int64) int64 {
	if o.index.Load() != index {
		return 0
	}
	return o.sum.Load()
}

// reset forgets every report.
func (o *othersView) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.by = nil
	o.index.Store(0)
	o.sum.Store(0)
}

func (o *othersView) set(from string, index, unspent int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.index.Load() != index {
		o.by = o.by[:0]
		o.sum.Store(0)
		o.index.Store(index)
	}
	for i := range o.by {
		if o.by[i].from == from {
			o.sum.Add(unspent - o.by[i].unspent)
			o.by[i].unspent = unspent
			return
		}
	}
	o.by = append(o.by, unspentBy{from, unspent})
	o.sum.Add(unspent)
}

// peers are the other keygates heard from lately.
type peers struct {
	mu   sync.Mutex
	now  func() time.Time
	seen map[string]time.Time // id -> when it is no longer counted
	last atomic.Int64         // count as last computed
}

func (p *peers) init(now func() time.Time) {
	p.now, p.seen = now, map[string]time.Time{}
	p.last.Store(1)
}

// saw records a report from id, which reports every interval.
func (p *peers) saw(id string, interval time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.seen[id] = now.Add(max(5*interval, time.Second))
	p.recount(now)
}

// expire stops counting keygates not heard from lately.
func (p *peers) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recount(p.now())
}

func (p *peers) recount(now time.Time) {
	n := 1
	for k, until := range p.seen {
		if now.After(until) {
			delete(p.seen, k)
			continue
		}
		n++
	}
	p.last.Store(int64(n))
}

// count is how many keygates share the limits, this one included, as
// last heard: it is kept through an outage, when no reports arrive.
func (p *peers) count() int64 { return p.last.Load() }

// Peers is how many keygates share the limits, this one included.
func (l *Limiter) Peers() int64 { return l.peers.count() }

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
