package alerts

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

// A balance's side of its threshold is kept per account in the bucket
// (low.<account>: {"below":false,"rev":41}), changed by compare-and-set
// in the order of the account record's revisions: each crossing moves it
// once, whichever keygates see it. A crossing below is named by the
// record revision at which the balance was last found at or above the
// threshold (the state's rev then), so that every keygate that finds it,
// from whichever revision, claims the same alert.

// lowState is an account's entry: the side of its threshold its balance
// was on at record revision Rev.
type lowState struct {
	Below bool   `json:"below"`
	Rev   uint64 `json:"rev"`
}

// lowClaimTTL is how long a low-balance claim lives: far longer than a
// keygate lags behind the others.
const lowClaimTTL = 7 * 24 * time.Hour

// queued bounds the account changes waiting to be examined.
const queued = 4096

// balances follows account records; what it examines in the bucket is
// only each account's first change seen and the changes that move its
// balance across its threshold, in a goroutine of its own.
type balances struct {
	a     *Alerts
	mu    sync.Mutex
	seen  map[string]seen // by account: as last handled
	queue chan change
	added atomic.Uint64 // changes queued
	done  atomic.Uint64 // changes examined
}

type seen struct {
	rev   uint64
	below bool
}

// change is an account record at a revision, as the examination needs it.
type change struct {
	id        string
	rev       uint64
	below     bool
	balance   money.Exact
	threshold int64
	currency  string
}

func newBalances(a *Alerts) *balances {
	return &balances{a: a, seen: map[string]seen{}, queue: make(chan change, queued)}
}

// Account follows a change of the accounts bucket, as events.Handlers'
// Account: in memory only, so that it never holds up the watcher.
func (a *Alerts) Account(id string, rev uint64, acct *store.Account) {
	if !store.ValidAccountID(id) {
		return // an entry beside the records (a settlement)
	}
	b := a.bal
	b.mu.Lock()
	defer b.mu.Unlock()
	if acct == nil {
		delete(b.seen, id)
		return
	}
	thr := a.threshold(acct)
	below := thr > 0 && acct.Balance < thr // Balance is the exact balance's floor: below a whole threshold alike
	prev, known := b.seen[id]
	if known && rev <= prev.rev {
		return
	}
	b.seen[id] = seen{rev: rev, below: below}
	if known && prev.below == below {
		return
	}
	select {
	case b.queue <- change{id: id, rev: rev, below: below, balance: acct.Exact(), threshold: thr, currency: acct.Currency}:
		b.added.Add(1)
	default:
		delete(b.seen, id) // examined at its next change
		a.stats.Lost.Add(1)
	}
}

// threshold is the account's low-balance threshold in its minor units.
func (a *Alerts) threshold(acct *store.Account) int64 {
	switch {
	case acct.LowBalanceThreshold != nil:
		return *acct.LowBalanceThreshold
	case money.Decimals(acct.Currency) == 0:
		return a.o.LowBalance / 100
	}
	return a.o.LowBalance
}

func (b *balances) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-b.queue:
			if err := b.examine(ctx, c); err != nil && ctx.Err() == nil {
				b.forget(c.id)
				b.a.failed("low balance of "+c.id, err)
			}
			b.done.Add(1)
		}
	}
}

// examine moves the account's state to c's side if c is the later
// revision, claiming the alert of a crossing below.
func (b *balances) examine(ctx context.Context, c change) error {
	key := lowPrefix + c.id
	for {
		var st lowState
		rev, found, err := b.a.kv.get(ctx, key, &st)
		if err != nil {
			return err
		}
		if found && (st.Rev >= c.rev || st.Below == c.below) {
			return nil // a later revision is in, or no crossing
		}
		// A first state is only a start: a balance never seen at or
		// above its threshold did not cross it.
		if found && c.below {
			if err := b.a.claim(ctx, b.alert(c, st.Rev), lowClaimTTL); err != nil {
				return err
			}
		}
		_, err = b.a.kv.put(ctx, key, lowState{Below: c.below, Rev: c.rev}, rev, 0)
		if err != errConflict {
			return err
		}
	}
}

// forget drops what is known of an account, so that its next change is
// examined whatever it says.
func (b *balances) forget(id string) {
	b.mu.Lock()
	delete(b.seen, id)
	b.mu.Unlock()
}

// alert is the low-balance alert of c's crossing, found from the state
// armed at record revision armed.
func (b *balances) alert(c change, armed uint64) *Alert {
	return &Alert{ID: KindLowBalance + "." + c.id + "." + strconv.FormatUint(armed, 10), Kind: KindLowBalance, AccountID: c.id,
		Threshold: money.Format(c.threshold, c.currency), Value: money.FormatExact(c.balance, c.currency), Currency: c.currency,
		At: b.a.o.Now().UTC()}
}

// idle reports whether every change queued has been examined.
func (b *balances) idle() bool { return b.added.Load() == b.done.Load() }
