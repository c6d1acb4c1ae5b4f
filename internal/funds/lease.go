package funds

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/internal/store"
)

// flight is the lease in progress on an account at this keygate: the
// checks that need more than is free wait for it together, and it leases
// what they all need.
type flight struct {
	done  chan struct{}
	short bool  // the account cannot cover what was asked
	err   error // the store did not answer
}

// flightTimeout bounds a lease; a check waits for it at most
// LeaseTimeout, and what a slower lease takes is held for later checks.
const flightTimeout = time.Second

var errShort = errors.New("funds short")

// lease adds to this keygate's hold of account id what the checks
// waiting on fl need, and ends fl.
func (f *Funds) lease(id string, a *account, fl *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), flightTimeout)
	defer cancel()
	a.write.Lock()
	defer a.write.Unlock()
	err := f.update(ctx, id, a, nil, func(acc *store.Account, now time.Time) error {
		a.mu.Lock()
		free := a.lease + a.owed - a.held
		need, least, rate := a.want-free, a.least-free, a.rate
		a.mu.Unlock()
		if need <= 0 {
			return nil
		}
		n := size(need, available(acc), f.o.Peers(), rate)
		if n < least {
			return errShort
		}
		h := acc.Holds[f.o.ID]
		acc.Holds[f.o.ID] = store.Hold{Nanos: h.Nanos + n, At: now}
		return nil
	})
	f.stats.Leases.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case errors.Is(err, errShort):
		fl.short = true
		f.failing.Store(0)
	case errors.Is(err, store.ErrInvalidRecord):
		fl.err = err // not an outage: the record is there, and refuses
	case err != nil:
		fl.err = err
		f.failing.CompareAndSwap(0, f.o.Now().UnixNano())
	default:
		f.failing.Store(0)
	}
	a.flight = nil
	close(fl.done)
}

// update changes the account record by compare-and-set with change,
// which may run more than once and sees the record with holds abandoned
// by dead keygates dropped; it keeps a's lease, balance and available as
// last written or read, and runs landed (if set) with a.mu held once the
// change is written. The caller holds a.write.
func (f *Funds) update(ctx context.Context, id string, a *account, landed func(), change func(*store.Account, time.Time) error) error {
	var read *store.Account
	acc, err := f.st.UpdateAccount(ctx, id, false, func(acc *store.Account) error {
		read = acc
		now := f.o.Now()
		if acc.Holds == nil {
			acc.Holds = map[string]store.Hold{}
		}
		f.dropAbandoned(acc, now)
		return change(acc, now)
	})
	if acc == nil {
		acc = read
	}
	if acc != nil {
		a.mu.Lock()
		if err == nil || errors.Is(err, errShort) {
			a.lease = f.leaseOf(acc)
		}
		if err == nil {
			a.wrote = f.o.Now()
			if landed != nil {
				landed()
			}
		}
		a.seen, a.avail = acc.Exact(), available(acc)
		a.mu.Unlock()
	}
	return err
}

// dropAbandoned drops the holds of keygates silent for o.Abandoned:
// every hold they took has settled or expired by then.
func (f *Funds) dropAbandoned(acc *store.Account, now time.Time) {
	for id, h := range acc.Holds {
		if id != f.o.ID && now.Sub(h.At) > f.o.Abandoned {
			delete(acc.Holds, id)
		}
	}
}

// available is what the account can still hold, in nanos: its balance
// minus every hold, 0 when that is negative.
func available(acc *store.Account) int64 {
	return max(balanceNanos(acc)-acc.Held(), 0)
}

// balanceNanos is acc's balance in nanos; a balance too large to count
// in nanos is maxNanos, or -maxNanos below 0 (holds are at most maxNanos
// in all, so either less them does not overflow).
func balanceNanos(acc *store.Account) int64 {
	bal, ok := acc.Exact().TotalNanos()
	switch {
	case ok:
		return bal
	case acc.Balance < 0:
		return -maxNanos
	}
	return maxNanos
}

// leaseOf is what this keygate may spend of acc: its hold, but never more
// than the balance less the other keygates' holds, so that a hold written
// by another hand (or a balance set below the holds) cannot lend it money
// the account does not have.
func (f *Funds) leaseOf(acc *store.Account) int64 {
	own := max(acc.Holds[f.o.ID].Nanos, 0)
	return max(min(own, balanceNanos(acc)-(acc.Held()-own)), 0)
}

// maxNanos stands for a balance too large to count in nanos.
const maxNanos = 1 << 62

// Sizing. A lease covers at least what the checks waiting for it need.
// While the account is far from empty it covers more, so that a check
// rarely waits: a second of this keygate's holds, and at least
// firstLeases times what is needed now (a burst from nothing), but never
// more than a quarter of its share of what is available, so that every
// keygate finds funds to lease and none strands many. Near empty, a
// lease is exactly what is needed, so the fleet holds the whole balance
// and no more.
const (
	shareQuarter = 4
	firstLeases  = 8
)

// size is how many nanos to lease for need, with avail available to
// peers keygates, and rate nanos held here in the last second; all of
// avail when that is less than need (the checks that fit take it).
func size(need, avail, peers, rate int64) int64 {
	if avail < need {
		return avail
	}
	ahead := max(rate, need*firstLeases)
	if need > maxNanos/firstLeases {
		ahead = rate
	}
	return min(max(need, min(avail/(shareQuarter*max(peers, 1)), ahead)), avail)
}
