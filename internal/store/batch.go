package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Entry is an entry of the accounts bucket written beside an account
// record in one atomic batch (CommitAccount): created, never replaced,
// and gone after TTL.
type Entry struct {
	Key   string
	Value []byte
	TTL   time.Duration
}

// CommitAccount writes entries and the account's change in one atomic
// batch, the record by compare-and-set, so that neither lands without the
// other. Entries are created, never replaced: one that exists is left
// out, and the change sees only those it writes (it may run more than
// once). It returns the account as written and the keys of the entries
// that existed.
func (s *Store) CommitAccount(ctx context.Context, id string, entries []Entry, change func(a *Account, entries []Entry) error) (*Account, []string, error) {
	var existed []string
	for {
		a, rev, err := s.Account(ctx, id)
		if err != nil {
			return nil, existed, err
		}
		if err := change(a, entries); err != nil {
			return nil, existed, err
		}
		a.UpdatedAt = time.Now().UTC()
		rec, _ := json.Marshal(a)
		err = s.batch(ctx, entries, id, rec, rev)
		if !errors.Is(err, errWrongLast) {
			return a, existed, wrap(err, "update account "+id)
		}
		kept := entries[:0:0]
		for _, e := range entries {
			switch _, err := s.accounts.Get(ctx, e.Key); {
			case err == nil:
				existed = append(existed, e.Key)
			case errors.Is(err, jetstream.ErrKeyNotFound):
				kept = append(kept, e)
			default:
				return nil, existed, wrap(err, "update account "+id)
			}
		}
		entries = kept
	}
}

var errWrongLast = errors.New("wrong last sequence")

// batch publishes entries (each expected new) and the record of id at
// rev as one atomic batch of the accounts bucket's stream.
func (s *Store) batch(ctx context.Context, entries []Entry, id string, rec []byte, rev uint64) error {
	nc := s.js.Conn()
	prefix := "$KV." + s.accounts.Bucket() + "."
	batch := nuid.Next()
	msg := func(i int, subject string, data []byte, last uint64) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set("Nats-Batch-Id", batch)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(last, 10))
		return m
	}
	for i, e := range entries {
		m := msg(i, prefix+e.Key, e.Value, 0)
		if e.TTL > 0 {
			m.Header.Set("Nats-TTL", strconv.FormatInt(int64(e.TTL/time.Second), 10)+"s")
		}
		if err := nc.PublishMsg(m); err != nil {
			return err
		}
	}
	last := msg(len(entries), prefix+id, rec, rev)
	last.Header.Set("Nats-Batch-Commit", "1")
	reply, err := nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return err
	}
	var ack struct {
		Error *struct {
			Code        int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	switch {
	case ack.Error == nil:
		return nil
	case ack.Error.Code == wrongLastSequence:
		return errWrongLast
	}
	return fmt.Errorf("batch: %s (%d)", ack.Error.Description, ack.Error.Code)
}

// wrongLastSequence is JetStream's error code for a failed expected last
// subject sequence.
const wrongLastSequence = 10071
