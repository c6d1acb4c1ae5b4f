package settle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// expiryConsumer is the durable consumer, shared by every keygate, that
// takes each batch's expiry once it fires.
const expiryConsumer = "keygate_expiry"

// Timing of records. A batch is written at most writeEvery after its
// first reservation; its expiry fires expiryGrace after its last
// reservation's, so that a keygate still running settles its own (it
// expires them in memory, every second) and the others only those of a
// keygate that is gone.
const (
	writeEvery  = 10 * time.Millisecond
	expiryGrace = time.Minute // Options.ExpiryGrace's default
)

// Run writes reservations' records, answers settlements forwarded to
// this keygate and those of the settle API, settles at their estimate
// its reservations whose TTL passed and those of keygates that are gone,
// and retries settlements that failed, until ctx ends.
func (s *Settler) Run(ctx context.Context) error {
	sub, err := s.nc.Subscribe(SettleSubject(s.holds)+"."+s.o.ID, func(m *nats.Msg) { go s.answer(ctx, m) })
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	pub, err := s.servePublic(ctx)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	defer func() { _ = pub.Unsubscribe() }()
	stop, err := s.consumeExpiries(ctx)
	if err != nil {
		return err
	}
	defer stop()
	go s.writeRecords(ctx)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.expireOwn(ctx)
			s.retry(ctx)
		}
	}
}

// writeRecords writes each batch of reservations as one message,
// scheduled to fire on its expiry subject.
func (s *Settler) writeRecords(ctx context.Context) {
	t := time.NewTicker(writeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		s.mu.Lock()
		s.sealLocked()
		batches := s.sealed
		s.sealed = nil
		records := make([][]*Reservation, len(batches))
		for i, b := range batches {
			for _, r := range b.rs {
				if r != nil {
					records[i] = append(records[i], r)
				}
			}
		}
		s.mu.Unlock()
		for i, b := range batches {
			err := s.writeRecord(ctx, b.no, records[i], b.expires)
			s.mu.Lock()
			if err != nil {
				s.o.Log.Warn("writing holds' record; retrying", "batch", b.no, "err", err)
				s.sealed = append(s.sealed, b)
			} else if b.written = true; b.left == 0 {
				delete(s.batches, b.no)
			}
			s.mu.Unlock()
		}
	}
}

func (s *Settler) writeRecord(ctx context.Context, no uint64, rs []*Reservation, last time.Time) error {
	if len(rs) == 0 {
		return nil // all settled before it was written
	}
	data, _ := json.Marshal(rs)
	m := nats.NewMsg(s.holdSubject(s.o.ID, no))
	m.Data = data
	m.Header.Set("Nats-Schedule", "@at "+last.Add(s.o.ExpiryGrace).UTC().Format(time.RFC3339))
	m.Header.Set("Nats-Schedule-Target", s.expirySubject(s.o.ID, no))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.js.PublishMsg(ctx, m)
	return err
}

// expireOwn settles at their estimate this keygate's reservations whose
// TTL passed.
func (s *Settler) expireOwn(ctx context.Context) {
	now := s.o.Now()
	s.mu.Lock()
	var ids []string
	for no := s.oldest; no < s.next; no++ {
		b := s.batches[no]
		if b == nil {
			if no == s.oldest {
				s.oldest++
			}
			continue
		}
		if b.expires.After(now) {
			break
		}
		for _, r := range b.rs {
			if h := s.res[r.idOrEmpty()]; r != nil && h != nil && h.settling == nil {
				ids = append(ids, r.ID)
			}
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		_, _ = s.Settle(ctx, id, Outcome{Expired: true})
	}
}

// consumeExpiries settles, at their estimate, the reservations of
// keygates that are gone when their batch's expiry fires.
func (s *Settler) consumeExpiries(ctx context.Context) (func(), error) {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.holds, jetstream.ConsumerConfig{
		Durable: expiryConsumer, FilterSubject: s.holds + ".expired.>", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Minute, MaxAckPending: 100,
	})
	if err != nil {
		return nil, fmt.Errorf("settle: expiry consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var rs []*Reservation
		if err := json.Unmarshal(m.Data(), &rs); err != nil {
			_ = m.Term()
			return
		}
		if err := s.expireBatch(ctx, rs); err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	})
	if err != nil {
		return nil, fmt.Errorf("settle: expiries: %w", err)
	}
	return cc.Stop, nil
}

// expireBatch settles at their estimate the reservations of rs not
// settled yet, unless their keygate runs (it expires its own).
func (s *Settler) expireBatch(ctx context.Context, rs []*Reservation) error {
	if len(rs) == 0 || s.o.Alive(rs[0].Holder) {
		return nil
	}
	for _, r := range rs {
		if _, err := s.written(ctx, r.Account, r.ID); !errors.Is(err, ErrUnknown) {
			if err != nil {
				return err
			}
			continue
		}
		s.stats.Inherited.Add(1)
		if _, err := s.execute(ctx, r, Outcome{Expired: true}); err != nil && !errors.Is(err, errTooLate) {
			return err
		}
	}
	return nil
}

// retry settles again the reservations whose settlement failed.
func (s *Settler) retry(ctx context.Context) {
	s.mu.Lock()
	var ids []string
	outcomes := map[string]Outcome{}
	for id := range s.failed {
		if h := s.res[id]; h != nil && h.pending != nil && h.settling == nil {
			ids = append(ids, id)
			outcomes[id] = *h.pending
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		_, _ = s.Settle(ctx, id, outcomes[id])
	}
}
