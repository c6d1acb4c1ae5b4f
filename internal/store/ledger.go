package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ledgerIdle is how long ReadLedger waits for a message before it asks
// the server whether any is left to read.
const ledgerIdle = 2 * time.Second

// ReadLedger calls fn with the body of each settlement in the ledger
// stored from since on, of account (every account's with ""), in the
// order stored, up to the ledger's last message when it starts: what is
// stored while it reads is left for the next read, so it ends. The
// ledger copies settlement entries at least once, so a body may come
// twice. It skips what is not a settlement: the markers of entries
// deleted, purged or expired, and empty bodies. An error from fn stops
// it and is returned.
func (s *Store) ReadLedger(ctx context.Context, account string, since time.Time, fn func(body []byte) error) error {
	st, err := s.js.Stream(ctx, s.ledgerStream)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", s.ledgerStream, err)
	}
	last := st.CachedInfo().State.LastSeq
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since}
	if account != "" {
		cfg.FilterSubjects = []string{LedgerSubject(s.ledgerStream, account)}
	}
	c, err := s.js.OrderedConsumer(ctx, s.ledgerStream, cfg)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", s.ledgerStream, err)
	}
	if last == 0 || c.CachedInfo().NumPending == 0 {
		return nil
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("read stream %s: %w", s.ledgerStream, err)
	}
	defer it.Stop()
	for {
		m, err := next(ctx, it, c)
		if err != nil || m == nil {
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read stream %s: %w", s.ledgerStream, err)
		}
		if md.Sequence.Stream > last {
			return nil
		}
		if isSettlement(m) {
			if err := fn(m.Data()); err != nil {
				return err
			}
		}
		if md.Sequence.Stream == last || md.NumPending == 0 {
			return nil
		}
	}
}

// next is the consumer's next message, or nil when the server has none
// left for it: one removed from the stream (by age) after it was counted
// never comes.
func next(ctx context.Context, it jetstream.MessagesContext, c jetstream.Consumer) (jetstream.Msg, error) {
	for {
		nctx, cancel := context.WithTimeout(ctx, ledgerIdle)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		switch {
		case err == nil:
			return m, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("read ledger: %w", ctx.Err())
		case !errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("read ledger: %w", err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("read ledger: %w", err)
		}
		if info.NumPending == 0 {
			return nil, nil
		}
	}
}

// isSettlement tells a settlement entry's copy from the markers a bucket
// writes for an entry deleted or purged (KV-Operation) or removed by
// age (Nats-Marker-Reason), and from empty bodies.
func isSettlement(m jetstream.Msg) bool {
	h := m.Headers()
	return len(m.Data()) > 0 && h.Get("KV-Operation") == "" && h.Get(jetstream.MarkerReasonHeader) == ""
}
