package funds

import (
	"context"
	"time"

	"github.com/keygate/keygate/internal/store"
)

// idleAfter is how long an account goes without a hold here before this
// keygate hands back what it leased beyond its holds, and forgets the
// account once it holds nothing.
const idleAfter = 15 * time.Second

// Run charges what the outage rule held, hands back idle leases and
// keeps this keygate's holds from looking abandoned, every second until
// ctx ends; then it hands back every lease beyond its holds.
func (f *Funds) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.handBackAll()
			return
		case <-t.C:
			f.sweep(ctx)
		}
	}
}

func (f *Funds) sweep(ctx context.Context) {
	now := f.o.Now()
	f.mu.Lock()
	ids := make([]string, 0, len(f.accts))
	for id := range f.accts {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		a := f.account(id)
		a.mu.Lock()
		owed, idle, spare := a.owed, now.Sub(a.lastUse) > idleAfter, a.lease-a.held
		stale := a.lease > 0 && now.Sub(a.wrote) > f.o.Abandoned/4
		empty := a.lease == 0 && a.held == 0 && owed == 0
		a.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, flightTimeout)
		switch {
		case owed > 0 && f.o.Online():
			_ = f.charge(wctx, id, a)
		case idle && empty:
			f.forget(id, a)
		case idle && spare > 0, stale:
			_ = f.handBack(wctx, id, a)
		}
		cancel()
	}
}

// handBack returns what this keygate leased of account id beyond its
// holds, and refreshes its hold's time.
func (f *Funds) handBack(ctx context.Context, id string, a *account) error {
	a.write.Lock()
	defer a.write.Unlock()
	var back int64
	err := f.update(ctx, id, a, nil, func(acc *store.Account, now time.Time) error {
		a.mu.Lock()
		keep := a.held - a.owed
		a.mu.Unlock()
		h, ok := acc.Holds[f.o.ID]
		if !ok && keep <= 0 {
			return nil
		}
		back = max(h.Nanos-keep, 0)
		if keep <= 0 {
			delete(acc.Holds, f.o.ID)
			return nil
		}
		acc.Holds[f.o.ID] = store.Hold{Nanos: min(h.Nanos, keep), At: now}
		return nil
	})
	if err == nil {
		f.stats.HandedBack.Add(uint64(back))
	}
	return err
}

// handBackAll hands back every account's spare lease, as a keygate that
// stops does.
func (f *Funds) handBackAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.mu.Lock()
	accts := make(map[string]*account, len(f.accts))
	for id, a := range f.accts {
		accts[id] = a
	}
	f.mu.Unlock()
	for id, a := range accts {
		a.mu.Lock()
		spare := a.lease - (a.held - a.owed)
		a.mu.Unlock()
		if spare > 0 {
			_ = f.handBack(ctx, id, a)
		}
	}
}

// forget drops an account this keygate holds nothing of.
func (f *Funds) forget(id string, a *account) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lease == 0 && a.held == 0 && a.owed == 0 && a.flight == nil && f.accts[id] == a {
		delete(f.accts, id)
	}
}

// Sweep does one round of Run's work.
func (f *Funds) Sweep(ctx context.Context) { f.sweep(ctx) }
