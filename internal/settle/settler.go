package settle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	// Alive reports whether the keygate with an id is running (nil: only
	// this one): the reservations of a keygate that is gone are settled
	// by the others when their TTL passes.
	Alive func(id string) bool
	// ExpiryGrace is how long after its TTL a reservation of a keygate
	// that is gone is settled by another (1 minute if zero).
	ExpiryGrace time.Duration
	// Settled, if set, is told of every settlement this keygate writes,
	// once, after its debit: alerts count spend from it. It must not
	// block.
	Settled func(*Reservation, *Settlement)
	Now     func() time.Time
	Log     *slog.Logger
}

// Settler keeps this keygate's reservations and settles reservations.
type Settler struct {
	o       Options
	js      jetstream.JetStream
	nc      *nats.Conn
	holds   string // the holds stream
	mu      sync.Mutex
	res     map[string]*held
	failed  map[string]bool   // reservations whose settlement failed, to retry
	batches map[uint64]*batch // batches holding unsettled reservations, or not written yet
	oldest  uint64            // no batch before it is left
	cur     *batch            // the batch new reservations join
	sealed  []*batch          // batches to write
	next    uint64            // the next batch's number
	wake    chan struct{}
	stats   Stats
}

// batch is the reservations whose records are written in one message, in
// the order they were made (their TTLs are one length, so their expiries
// are in order too).
type batch struct {
	no      uint64
	rs      []*Reservation // nil where settled
	left    int            // unsettled
	expires time.Time      // the last reservation's
	written bool
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
	r        *Reservation // &res
	res      Reservation
	settling chan struct{} // closed when the settlement in progress ends; nil: none
	pending  *Outcome      // an outcome whose settlement failed, retried until the TTL
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
	if o.ExpiryGrace == 0 {
		o.ExpiryGrace = expiryGrace
	}
	if o.Alive == nil {
		o.Alive = func(id string) bool { return id == o.ID }
	}
	js := o.Store.JetStream()
	return &Settler{o: o, js: js, nc: js.Conn(), holds: o.Store.HoldsStream(), res: map[string]*held{}, failed: map[string]bool{},
		batches: map[uint64]*batch{}, wake: make(chan struct{}, 1)}
}

// Stats returns the counters.
func (s *Settler) Stats() *Stats { return &s.stats }

// maxBatch bounds the reservations of one record.
const maxBatch = 512

// Reserve keeps a copy of res, named (its ID and Holder set), has its
// record written with the batch it joins, and returns its id.
func (s *Settler) Reserve(res Reservation) string {
	s.stats.Reservations.Add(1)
	h := &held{res: res}
	r := &h.res
	h.r = r
	s.mu.Lock()
	if s.cur == nil {
		s.cur = &batch{no: s.next}
		s.batches[s.next] = s.cur
		s.next++
	}
	b := s.cur
	r.Holder, r.ID = s.o.ID, newID(s.o.ID, b.no, len(b.rs), r.Account)
	b.rs, b.left = append(b.rs, r), b.left+1
	if r.Expires.After(b.expires) {
		b.expires = r.Expires
	}
	s.res[r.ID] = h
	if len(b.rs) == maxBatch {
		s.sealLocked()
	}
	s.mu.Unlock()
	return r.ID
}

// sealLocked closes the current batch for writing; s.mu is held.
func (s *Settler) sealLocked() {
	if s.cur == nil {
		return
	}
	s.sealed, s.cur = append(s.sealed, s.cur), nil
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Outstanding is how many reservations this keygate holds unsettled.
func (s *Settler) Outstanding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.res)
}

// Settle settles reservation id with o, once: a reservation settled
// before answers its first settlement. ErrUnknown: no reservation has id,
// or its time to settle is over.
func (s *Settler) Settle(ctx context.Context, id string, o Outcome) (*Settlement, error) {
	rid, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if rid.holder != s.o.ID {
		st, err := s.forward(ctx, rid.holder, id, o)
		if !errors.Is(err, errNoHolder) {
			return st, err
		}
		return s.inherit(ctx, rid, id, o)
	}
	s.mu.Lock()
	h := s.res[id]
	if h == nil {
		s.mu.Unlock()
		// Settled here before (ids are new at every start): its entry
		// answers, never its record.
		return s.written(ctx, rid.account, id)
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
		if s.res[id] != h { // settled, or too late
			st, err := h.result, h.err
			s.mu.Unlock()
			return st, err
		}
	}
	h.settling = make(chan struct{})
	s.mu.Unlock()
	st, err := s.execute(ctx, h.r, o)
	s.mu.Lock()
	h.result, h.err = st, err
	switch {
	case err == nil:
		s.doneLocked(id, rid)
	case errors.Is(err, errTooLate):
		s.o.Log.Warn("reservation not settled in time: dropped, its hold released", "reservation", id)
		s.doneLocked(id, rid)
		s.o.Funds.Release(h.r.Account, h.r.Held)
	default:
		h.pending = &o
		s.failed[id] = true
		s.stats.Failures.Add(1)
	}
	close(h.settling)
	h.settling = nil
	s.mu.Unlock()
	return st, err
}

// doneLocked forgets settled reservation id; s.mu is held.
func (s *Settler) doneLocked(id string, rid reservationID) {
	delete(s.res, id)
	delete(s.failed, id)
	b := s.batches[rid.batch]
	if b == nil || rid.index >= len(b.rs) || b.rs[rid.index] == nil || b.rs[rid.index].ID != id {
		return
	}
	b.rs[rid.index], b.left = nil, b.left-1
	if b.left == 0 && b.written {
		delete(s.batches, rid.batch)
	}
}

// errTooLate refuses a settlement after its reservation's settleBy.
var errTooLate = fmt.Errorf("%w: its time to settle is over", ErrUnknown)

// settleBy is when the time to settle reservation r ends: its expiry's
// grace and store.RecordGrace after its TTL, for settlements that failed
// (NATS unavailable) to be retried.
func (s *Settler) settleBy(r *Reservation) time.Time {
	return r.Expires.Add(s.o.ExpiryGrace + store.RecordGrace)
}

// execute writes r's settlement with o and its debit, and settles its
// takes of the key's budgets. A reservation settled before answers its
// first settlement and changes nothing.
//
// A reservation is settled at most once: its settlement entry, written
// only if it does not exist, lives until store.RecordGrace after
// settleBy (a margin for clocks), and nothing is settled after settleBy.
// So every settlement finds the entry of an earlier one, however it found
// the reservation: in memory, from its record, or from its expiry's,
// which can outlive the entry.
func (s *Settler) execute(ctx context.Context, r *Reservation, o Outcome) (*Settlement, error) {
	now, by := s.o.Now(), s.settleBy(r)
	if !now.Before(by) {
		return nil, errTooLate
	}
	st := r.settlement(o, now, s.o.ID)
	b, _ := json.Marshal(st)
	d := funds.Debit{Entry: store.Entry{Key: store.SettlementEntry(r.Account, r.ID), Value: b, TTL: by.Sub(now) + store.RecordGrace},
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
	if s.o.Settled != nil {
		s.o.Settled(r, st)
	}
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
func (s *Settler) inherit(ctx context.Context, rid reservationID, id string, o Outcome) (*Settlement, error) {
	if st, err := s.written(ctx, rid.account, id); !errors.Is(err, ErrUnknown) {
		return st, err
	}
	r, err := s.record(ctx, rid, id)
	if err != nil {
		return nil, err
	}
	s.stats.Inherited.Add(1)
	return s.execute(ctx, r, o)
}

// record reads reservation id from its batch's record, before or after
// its expiry fired.
func (s *Settler) record(ctx context.Context, rid reservationID, id string) (*Reservation, error) {
	st, err := s.js.Stream(ctx, s.holds)
	if err != nil {
		return nil, err
	}
	for _, subj := range []string{s.holdSubject(rid.holder, rid.batch), s.expirySubject(rid.holder, rid.batch)} {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var rs []*Reservation
		if err := json.Unmarshal(m.Data, &rs); err != nil {
			return nil, fmt.Errorf("%w: unreadable record", ErrUnknown)
		}
		for _, r := range rs {
			if r.ID == id {
				return r, nil
			}
		}
	}
	return nil, ErrUnknown
}

func (s *Settler) holdSubject(holder string, b uint64) string {
	return s.holds + ".hold." + holder + "." + strconv.FormatUint(b, 10)
}

func (s *Settler) expirySubject(holder string, b uint64) string {
	return s.holds + ".expired." + holder + "." + strconv.FormatUint(b, 10)
}
