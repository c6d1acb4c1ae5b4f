// Package funds holds account balances for metered requests and debits
// them, exactly across every keygate that shares NATS.
//
// The invariant: a keygate holds a request's estimate only from funds it
// has leased, and its lease is its entry in the account record's
// "holds", changed only by compare-and-set on the record, never beyond
// the balance minus every hold. So the estimates held by the whole fleet
// never exceed the balance. A debit lands in one atomic batch with its
// settlement entry (store.CommitAccount): it happens once or not at all,
// and takes the cost off both the balance and the holder's lease.
package funds

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// Options configure Funds.
type Options struct {
	// ID names this keygate in the accounts' holds.
	ID string
	// LeaseTimeout bounds a check's wait for a lease (100 ms if zero).
	LeaseTimeout time.Duration
	// OutageAfter is how long leases fail before the outage rule
	// applies (at once while Online says false); 3 s if zero.
	OutageAfter time.Duration
	// Abandoned is how long a keygate's hold may go unwritten before any
	// other drops it: it has died (HoldTTL plus store.RecordGrace).
	Abandoned time.Duration
	Online    func() bool  // nil: always
	Peers     func() int64 // keygates sharing the accounts; nil: 1
	Now       func() time.Time
	Log       *slog.Logger
}

// Funds holds and debits accounts' balances.
type Funds struct {
	st      *store.Store
	o       Options
	mu      sync.Mutex
	accts   map[string]*account
	failing atomic.Int64 // unix nanoseconds of the first failed lease since the last success; 0: none
	stats   Stats
}

// Stats count what Funds did: totals, no account's own.
type Stats struct {
	Leases      atomic.Uint64 // lease writes
	Debits      atomic.Uint64 // settlements debited
	OutageNanos atomic.Uint64 // held under the outage rule
	HandedBack  atomic.Uint64 // nanos handed back
}

// account is what this keygate knows of one account's funds.
type account struct {
	write sync.Mutex // one write of this keygate's at a time: lease, debit, hand-back

	mu      sync.Mutex
	lease   int64 // this keygate's hold in the record, as last written
	held    int64 // of it, held for requests in flight
	want    int64 // what the checks waiting for a lease need in all
	least   int64 // the least any of them needs
	flight  *flight
	seen    money.Exact // the balance as last read
	avail   int64       // what was available to hold, as last read
	owed    int64       // held under the outage rule, not yet in the lease
	used    int64       // held in the current second
	second  int64       // unix second of used
	rate    int64       // held in the last full second
	lastUse time.Time
	wrote   time.Time // when this keygate last wrote its hold
	queue   []*debit  // debits waiting for the next batch
}

// Result is the outcome of a Hold.
type Result struct {
	OK bool
	// Busy: the balance covers the estimate but what other requests in
	// flight hold leaves too little; it may pass a moment later.
	Busy bool
	// Unavailable: NATS did not answer in time and the outage rule does
	// not apply.
	Unavailable bool
	// Balance is the account's balance as last read.
	Balance money.Exact
}

// New returns Funds over the accounts of st.
func New(st *store.Store, o Options) *Funds {
	if o.LeaseTimeout == 0 {
		o.LeaseTimeout = 100 * time.Millisecond
	}
	if o.OutageAfter == 0 {
		o.OutageAfter = 3 * time.Second
	}
	if o.Abandoned == 0 {
		o.Abandoned = store.DefaultOptions().HoldTTL + store.RecordGrace
	}
	if o.Online == nil {
		o.Online = func() bool { return true }
	}
	if o.Peers == nil {
		o.Peers = func() int64 { return 1 }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Funds{st: st, o: o, accts: map[string]*account{}}
}

// Stats returns the counters.
func (f *Funds) Stats() *Stats { return &f.stats }

func (f *Funds) account(id string) *account {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accts[id]
	if a == nil {
		a = &account{}
		f.accts[id] = a
	}
	return a
}

// Hold holds n nanos of account id's funds for a request, waiting at
// most LeaseTimeout for a lease.
func (f *Funds) Hold(ctx context.Context, id string, n int64) Result {
	a := f.account(id)
	var timer *time.Timer
	for {
		a.mu.Lock()
		if a.lease+a.owed-a.held >= n {
			a.take(n, f.o.Now())
			bal := a.seen
			a.mu.Unlock()
			return Result{OK: true, Balance: bal}
		}
		if timer == nil {
			timer = time.NewTimer(f.o.LeaseTimeout)
			defer timer.Stop()
		}
		fl := a.flight
		if fl == nil {
			fl = &flight{done: make(chan struct{})}
			a.flight, a.want, a.least = fl, 0, n
			go f.lease(id, a, fl)
		}
		a.want, a.least = a.want+n, min(a.least, n)
		a.mu.Unlock()
		select {
		case <-fl.done:
		case <-timer.C:
			return f.stalled(a, n)
		case <-ctx.Done():
			return Result{Unavailable: true}
		}
		switch {
		case fl.short:
			return f.short(a, n)
		case errors.Is(fl.err, store.ErrInvalidRecord):
			return Result{Unavailable: true} // never the outage's allowance
		case fl.err != nil:
			return f.stalled(a, n)
		}
	}
}

// take holds n of what a has free; a.mu is held.
func (a *account) take(n int64, now time.Time) {
	a.held += n
	if s := now.Unix(); s != a.second {
		a.rate = 0
		if s == a.second+1 {
			a.rate = a.used
		}
		a.second, a.used = s, 0
	}
	a.used += n
	a.lastUse = now
}

// short answers a hold the account cannot cover now: busy if its balance
// alone would.
func (f *Funds) short(a *account, n int64) Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Result{Busy: a.seen.Cmp(n) >= 0, Balance: a.seen}
}

// Release gives back n nanos held by Hold for a request that was then
// denied or needs no more.
func (f *Funds) Release(id string, n int64) {
	a := f.account(id)
	a.mu.Lock()
	a.held = max(a.held-n, 0)
	a.mu.Unlock()
}
