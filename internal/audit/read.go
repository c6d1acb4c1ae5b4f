package audit

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Filter selects records.
type Filter struct {
	Since    time.Time // records stored at or after Since; zero: all
	Kind     string    // records of targets of this kind; empty: any
	TargetID string    // records of the target with this id; empty: any
	Limit    int       // at most this many, the oldest first; 0: all
}

// ErrBadRecord is wrapped by the error Read yields for a stored message
// that is not a record of this trail; reading goes on after it.
var ErrBadRecord = errors.New("unreadable audit record")

// idleWait is how long Read waits for the next record before asking
// the stream whether one is still to come.
const idleWait = 2 * time.Second

// Read yields the records f selects, in the order they were stored, up
// to the last one stored when Read began: it never waits for records to
// come. A message that is not a record yields an error wrapping
// ErrBadRecord, and reading goes on; any other error ends it.
func (l *Log) Read(ctx context.Context, f Filter) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		if err := l.read(ctx, f, yield); err != nil {
			yield(Record{}, err)
		}
	}
}

// filterSubject is the subject of the records f selects, or "" for all.
func (l *Log) filterSubject(f Filter) (string, error) {
	if f.Kind == "" && f.TargetID == "" {
		return "", nil
	}
	t := Target{Kind: f.Kind, ID: f.TargetID}
	if t.Kind == "" {
		t.Kind = "*"
	} else if !targetKinds[t.Kind] {
		return "", errors.New("filter: kind must be key, account or token")
	}
	if t.ID == "" {
		t.ID = "*"
	} else if err := checkID(t.ID, l.secret); err != nil {
		return "", fmt.Errorf("filter: target id %v", err)
	}
	return l.Subject(t), nil
}

// read delivers the records to yield; it returns nil once yield asks to
// stop.
func (l *Log) read(ctx context.Context, f Filter, yield func(Record, error) bool) error {
	subject, err := l.filterSubject(f)
	if err != nil {
		return err
	}
	st, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return fmt.Errorf("read %s: %w", l.stream, err)
	}
	last := st.CachedInfo().State.LastSeq
	if last == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if subject != "" {
		cfg.FilterSubjects = []string{subject}
	}
	if !f.Since.IsZero() {
		since := f.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	c, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", l.stream, err)
	}
	msgs, err := c.Messages()
	if err != nil {
		return fmt.Errorf("read %s: %w", l.stream, err)
	}
	defer msgs.Stop()
	if info := c.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	for n := 0; f.Limit <= 0 || n < f.Limit; {
		m, meta, err := l.next(ctx, c, msgs)
		if err != nil || m == nil || meta.Sequence.Stream > last {
			return err
		}
		r, err := l.decode(m, meta.Sequence.Stream)
		if err == nil {
			n++
		}
		if !yield(r, err) || meta.Sequence.Stream >= last || meta.NumPending == 0 {
			return nil
		}
	}
	return nil
}

// next returns the next message and its metadata, or nil once the
// consumer has nothing more to deliver.
func (l *Log) next(ctx context.Context, c jetstream.Consumer, msgs jetstream.MessagesContext) (jetstream.Msg, *jetstream.MsgMetadata, error) {
	for {
		wctx, cancel := context.WithTimeout(ctx, idleWait)
		m, err := msgs.Next(jetstream.NextContext(wctx))
		cancel()
		if err == nil {
			meta, err := m.Metadata()
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", l.stream, err)
			}
			return m, meta, nil
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, fmt.Errorf("read %s: %w", l.stream, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", l.stream, err)
		}
		if info.NumPending == 0 {
			return nil, nil, nil
		}
	}
}

// decode reads a stored record, which must be one that Append would
// store, under its target's subject.
func (l *Log) decode(m jetstream.Msg, seq uint64) (Record, error) {
	var r Record
	if err := decodeJSON(m.Data(), &r); err != nil {
		return Record{}, fmt.Errorf("%w: %s sequence %d: not JSON", ErrBadRecord, l.stream, seq)
	}
	if err := r.validate(l.secret); err != nil || r.At.IsZero() {
		return Record{}, fmt.Errorf("%w: %s sequence %d: not a record Append would store", ErrBadRecord, l.stream, seq)
	}
	if m.Subject() != l.Subject(r.Target) {
		return Record{}, fmt.Errorf("%w: %s sequence %d: not a record of its subject", ErrBadRecord, l.stream, seq)
	}
	return r, nil
}
