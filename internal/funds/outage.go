package funds

import (
	"context"
	"time"

	"github.com/keygate/keygate/internal/store"
)

// The outage rule. A keygate whose leases have failed for OutageAfter, or
// that is cut off from NATS, may hold beyond its lease up to its share of
// what was available when it last read the account, avail / peers. What
// it held so is added to its lease once the store answers again (charge),
// and settles like any hold. Across the fleet the outage holds are at
// most what was available: the balance minus the holds as each keygate
// last saw them.

// outage reports whether the outage rule applies.
func (f *Funds) outage() bool {
	if !f.o.Online() {
		return true
	}
	since := f.failing.Load()
	return since != 0 && f.o.Now().UnixNano()-since >= int64(f.o.OutageAfter)
}

// stalled answers a hold whose lease did not land in time: under the
// outage rule, from this keygate's share; else unavailable.
func (f *Funds) stalled(a *account, n int64) Result {
	if !f.outage() {
		return Result{Unavailable: true}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.owed+n > a.avail/max(f.o.Peers(), 1) {
		return Result{Unavailable: true}
	}
	a.owed += n
	a.take(n, f.o.Now())
	f.stats.OutageNanos.Add(uint64(n))
	return Result{OK: true, Balance: a.seen}
}

// charge adds what account id owes under the outage rule to this
// keygate's lease, past what is available if need be.
func (f *Funds) charge(ctx context.Context, id string, a *account) error {
	a.write.Lock()
	defer a.write.Unlock()
	a.mu.Lock()
	owed := a.owed
	a.mu.Unlock()
	if owed == 0 {
		return nil
	}
	return f.update(ctx, id, a, func() { a.owed -= owed; f.failing.Store(0) }, func(acc *store.Account, now time.Time) error {
		h := acc.Holds[f.o.ID]
		acc.Holds[f.o.ID] = store.Hold{Nanos: h.Nanos + owed, At: now}
		return nil
	})
}
