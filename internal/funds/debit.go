package funds

import (
	"context"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// Debit is one settled request to charge to an account.
type Debit struct {
	// Entry is the settlement's record (the ledger's line), written once
	// with the debit.
	Entry store.Entry
	// Holder is the keygate that holds the request's estimate, Held.
	Holder string
	Held   int64
	// Cost is what the request cost, in nanos: taken off the balance
	// and off the holder's lease.
	Cost int64
}

// debit is a Debit waiting for its batch.
type debit struct {
	Debit
	existed bool
	err     error
	done    chan struct{}
}

// maxBatch bounds the debits written in one atomic batch.
const maxBatch = 256

// Debit charges d to account id, in one atomic batch with the debits
// that other calls are waiting to write. It reports whether the
// settlement was written before (and so is not charged again). The
// estimate this keygate held for d is released once Debit returns
// without error, either way.
func (f *Funds) Debit(ctx context.Context, id string, d Debit) (existed bool, err error) {
	a := f.account(id)
	w := &debit{Debit: d, done: make(chan struct{})}
	a.mu.Lock()
	a.queue = append(a.queue, w)
	a.mu.Unlock()
	a.write.Lock()
	a.mu.Lock()
	n := min(len(a.queue), maxBatch)
	batch := a.queue[:n:n]
	a.queue = a.queue[n:]
	a.mu.Unlock()
	if len(batch) > 0 {
		f.commit(ctx, id, a, batch)
	}
	a.write.Unlock()
	<-w.done
	return w.existed, w.err
}

// commit writes batch and ends each of its debits. The caller holds
// a.write.
func (f *Funds) commit(ctx context.Context, id string, a *account, batch []*debit) {
	entries := make([]store.Entry, len(batch))
	for i, d := range batch {
		entries[i] = d.Entry
	}
	acc, existed, err := f.st.CommitAccount(ctx, id, entries, func(acc *store.Account, kept []store.Entry) error {
		now := f.o.Now()
		if acc.Holds == nil {
			acc.Holds = map[string]store.Hold{}
		}
		f.dropAbandoned(acc, now)
		keep := make(map[string]bool, len(kept))
		for _, e := range kept {
			keep[e.Key] = true
		}
		bal := acc.Exact()
		for _, d := range batch {
			if !keep[d.Entry.Key] {
				continue
			}
			var err error
			if bal, err = bal.AddNanos(-d.Cost); err != nil {
				return err
			}
			if h, ok := acc.Holds[d.Holder]; ok {
				h.Nanos = max(h.Nanos-d.Cost, 0)
				if d.Holder == f.o.ID {
					h.At = now
				}
				acc.Holds[d.Holder] = h
			}
		}
		acc.SetExact(bal)
		return nil
	})
	was := make(map[string]bool, len(existed))
	for _, k := range existed {
		was[k] = true
	}
	a.mu.Lock()
	if err == nil {
		f.stats.Debits.Add(uint64(len(batch) - len(existed)))
		a.lease, a.seen, a.avail, a.wrote = f.leaseOf(acc), acc.Exact(), available(acc), f.o.Now()
	}
	for _, d := range batch {
		d.err, d.existed = err, was[d.Entry.Key]
		if err == nil && d.Holder == f.o.ID {
			a.held = max(a.held-d.Held, 0)
		}
	}
	a.mu.Unlock()
	for _, d := range batch {
		close(d.done)
	}
}

// Balance is account id's balance as this keygate last read it, and what
// it holds of it.
func (f *Funds) Balance(id string) (balance money.Exact, held int64) {
	a := f.account(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen, a.held
}
