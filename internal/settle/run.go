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
// takes each reservation's expiry once it fires.
const expiryConsumer = "keygate_expiry"

// Run writes reservations' records, answers settlements forwarded to
// this keygate, settles the expiries that fire and retries settlements
// that failed, until ctx ends.
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
			s.retry(ctx)
		}
	}
}

// writeRecords writes each reservation's record: a message scheduled to
// fire, at the reservation's expiry, on its expiry subject.
func (s *Settler) writeRecords(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.writes:
			if err := s.writeRecord(ctx, r); err != nil {
				s.o.Log.Warn("writing a hold's record; retrying", "reservation", r.ID, "err", err)
				time.AfterFunc(time.Second, func() { s.writes <- r })
			}
		}
	}
}

// writeRecord writes r's record; if r was settled meanwhile, it deletes
// it at once, so that its expiry never fires.
func (s *Settler) writeRecord(ctx context.Context, r *Reservation) error {
	b, _ := json.Marshal(r)
	m := nats.NewMsg(s.holdSubject(r.Holder, r.ID))
	m.Data = b
	m.Header.Set("Nats-Schedule", "@at "+r.Expires.UTC().Format(time.RFC3339))
	m.Header.Set("Nats-Schedule-Target", s.expirySubject(r.Holder, r.ID))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	h := s.res[r.ID]
	if h != nil {
		h.seq = ack.Sequence
	}
	s.mu.Unlock()
	if h == nil {
		s.forget(ctx, ack.Sequence)
	}
	return nil
}

// forget deletes a settled reservation's record, so that its expiry
// never fires; if it fires anyway, it finds the settlement.
func (s *Settler) forget(ctx context.Context, seq uint64) {
	if st, err := s.js.Stream(ctx, s.holds); err == nil {
		_ = st.DeleteMsg(ctx, seq)
	}
}

// consumeExpiries settles, at their estimate, the reservations whose
// expiry fires unsettled.
func (s *Settler) consumeExpiries(ctx context.Context) (func(), error) {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.holds, jetstream.ConsumerConfig{
		Durable: expiryConsumer, FilterSubject: s.holds + ".expired.>", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxAckPending: 1000,
	})
	if err != nil {
		return nil, fmt.Errorf("settle: expiry consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r Reservation
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			_ = m.Term()
			return
		}
		_, err := s.Settle(ctx, r.ID, Outcome{Expired: true})
		if err == nil || errors.Is(err, ErrUnknown) {
			_ = m.Ack()
			return
		}
		_ = m.NakWithDelay(time.Second)
	})
	if err != nil {
		return nil, fmt.Errorf("settle: expiries: %w", err)
	}
	return cc.Stop, nil
}

// retry settles again the reservations whose settlement failed.
func (s *Settler) retry(ctx context.Context) {
	s.mu.Lock()
	var ids []string
	outcomes := map[string]Outcome{}
	for id, h := range s.res {
		if h.pending != nil && h.settling == nil {
			ids = append(ids, id)
			outcomes[id] = *h.pending
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		_, _ = s.Settle(ctx, id, outcomes[id])
	}
}
