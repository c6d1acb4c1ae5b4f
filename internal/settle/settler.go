package settle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// Options configure a Settler.
type Options struct {
	ID      string // this keygate, as funds.Options.ID
	Store   *store.Store
	Funds   *funds.Funds
	Limiter *ratelimit.Limiter
	HoldTTL time.Duration
	Now     func() time.Time
	Log     *slog.Logger
}

// Settler keeps this keygate's reservations and settles reservations.
type Settler struct {
	o      Options
	js     jetstream.JetStream
	nc     *nats.Conn
	holds  string // the holds stream
	mu     sync.Mutex
	res    map[string]*held
	writes chan *Reservation
	stats  Stats
}

// Stats count what a Settler did: totals, no key's own.
type Stats struct {
	Reservations atomic.Uint64
	Settled      atomic.Uint64 // settlements written, of every status
	Expired      atomic.Uint64
	Forwarded    atomic.Uint64 // settled by the keygate that holds them
	Inherited    atomic.Uint64 // settled here for a keygate that is gone
	Failures     atomic.Uint64 // settlements that could not be written (retried)
}

// held is a reservation this keygate holds.
type held struct {
	r        *Reservation
	settling chan struct{} // closed when the settlement in progress ends; nil: none
	pending  *Outcome      // an outcome whose settlement failed, retried
	seq      uint64        // of its record in the holds stream; 0: not written yet
	result   *Settlement
	err      error
}

// New returns a Settler; Run starts its work.
func New(o Options) *Settler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	js := o.Store.JetStream()
	return &Settler{o: o, js: js, nc: js.Conn(), holds: o.Store.HoldsStream(), res: map[string]*held{},
		writes: make(chan *Reservation, 4096)}
}

// Stats returns the counters.
func (s *Settler) Stats() *Stats { return &s.stats }

// Reserve keeps r, made by this keygate's check, and writes its record.
func (s *Settler) Reserve(r *Reservation) {
	s.stats.Reservations.Add(1)
	s.mu.Lock()
	s.res[r.ID] = &held{r: r}
	s.mu.Unlock()
	select {
	case s.writes <- r:
	default:
		go func() { s.writes <- r }()
	}
}

// Settle settles reservation id with o, once: a reservation settled
// before answers its first settlement.
func (s *Settler) Settle(ctx context.Context, id string, o Outcome) (*Settlement, error) {
	holder, account, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if holder != s.o.ID {
		st, err := s.forward(ctx, holder, id, o)
		if !errors.Is(err, errNoHolder) {
			return st, err
		}
		return s.inherit(ctx, holder, account, id, o)
	}
	s.mu.Lock()
	h := s.res[id]
	if h == nil {
		s.mu.Unlock()
		return s.inherit(ctx, holder, account, id, o)
	}
	for h.settling != nil {
		ch := h.settling
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s.mu.Lock()
		if h.err == nil && h.result != nil {
			st := h.result
			s.mu.Unlock()
			return st, nil
		}
	}
	h.settling = make(chan struct{})
	if h.pending != nil && o.Expired {
		o = *h.pending // the response's outcome, not yet written
	}
	s.mu.Unlock()
	st, err := s.execute(ctx, h.r, o)
	s.mu.Lock()
	h.result, h.err = st, err
	if err == nil {
		delete(s.res, id)
		if h.seq != 0 {
			go s.forget(context.WithoutCancel(ctx), h.seq)
		}
	} else {
		h.pending = &o
		s.stats.Failures.Add(1)
	}
	close(h.settling)
	h.settling = nil
	s.mu.Unlock()
	return st, err
}

// execute writes r's settlement with o and its debit, and settles its
// takes of the key's budgets. A reservation settled before answers its
// first settlement and changes nothing.
func (s *Settler) execute(ctx context.Context, r *Reservation, o Outcome) (*Settlement, error) {
	st, err := r.settlement(o, s.o.Now(), s.o.ID)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(st)
	d := funds.Debit{Entry: store.Entry{Key: store.SettlementEntry(r.Account, r.ID), Value: b, TTL: s.o.HoldTTL + store.RecordGrace},
		Holder: r.Holder, Held: r.Held}
	if r.Held > 0 {
		d.Cost = st.Cost
	}
	existed, err := s.o.Funds.Debit(ctx, r.Account, d)
	switch {
	case errors.Is(err, store.ErrNotFound) && r.Held == 0:
		// No account record (a test key's): nothing to debit or log.
	case err != nil:
		return nil, err
	case existed:
		return s.written(ctx, r.Account, r.ID)
	}
	s.stats.Settled.Add(1)
	if o.Expired {
		s.stats.Expired.Add(1)
	}
	s.settleTake(ctx, r.Tokens, st.TokensIn+st.TokensOut)
	s.settleTake(ctx, r.Spend, st.Cost)
	return st, nil
}

// settleTake corrects take t by what was used.
func (s *Settler) settleTake(ctx context.Context, t *Take, used int64) {
	if t != nil && s.o.Limiter != nil {
		s.o.Limiter.Settle(ctx, nil, t.Budget, t.limit(), t.Window, used-t.Units)
	}
}

// written reads the settlement of reservation id as first written;
// ErrUnknown if there is none.
func (s *Settler) written(ctx context.Context, account, id string) (*Settlement, error) {
	e, err := s.o.Store.Accounts().Get(ctx, store.SettlementEntry(account, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("read settlement of %s: %w", id, err)
	}
	var st Settlement
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, fmt.Errorf("read settlement of %s: %w", id, err)
	}
	return &st, nil
}

// inherit answers a reservation this keygate does not hold in memory:
// its settlement if written, else it settles it from its record (its
// keygate is gone).
func (s *Settler) inherit(ctx context.Context, holder, account, id string, o Outcome) (*Settlement, error) {
	if st, err := s.written(ctx, account, id); !errors.Is(err, ErrUnknown) {
		return st, err
	}
	r, err := s.record(ctx, holder, id)
	if err != nil {
		return nil, err
	}
	s.stats.Inherited.Add(1)
	return s.execute(ctx, r, o)
}

// record reads reservation id's record, before or after its expiry
// fired.
func (s *Settler) record(ctx context.Context, holder, id string) (*Reservation, error) {
	st, err := s.js.Stream(ctx, s.holds)
	if err != nil {
		return nil, err
	}
	for _, subj := range []string{s.holdSubject(holder, id), s.expirySubject(holder, id)} {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r Reservation
		if err := json.Unmarshal(m.Data, &r); err != nil || r.ID != id {
			return nil, fmt.Errorf("%w: unreadable record", ErrUnknown)
		}
		return &r, nil
	}
	return nil, ErrUnknown
}

func (s *Settler) holdSubject(holder, id string) string {
	return s.holds + ".hold." + holder + "." + id
}
func (s *Settler) expirySubject(holder, id string) string {
	return s.holds + ".expired." + holder + "." + id
}
