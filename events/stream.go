package events

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// entry is one revision of a bucket's entry.
type entry struct {
	key     string
	rev     uint64
	deleted bool // a delete or purge marker
	value   []byte
	created time.Time
}

// watch is a push consumer of a bucket's stream from a revision on. It
// delivers every revision in order, with flow control, and an idle
// heartbeat whenever the bucket has been quiet for Options.Heartbeat.
type watch struct {
	sub    *nats.Subscription
	synced chan struct{} // closed once the backlog at its creation is handled
	once   sync.Once

	mu      sync.Mutex // held while a message is handled
	stopped bool
	lost    bool   // it skipped a change or its consumer is gone: it goes no further
	dseq    uint64 // consumer sequence of the last change handled
}

// start watches the whole bucket, not just key records, from b.rev+1, so
// that every revision passes through in order. It subscribes before it
// creates the consumer, so that nothing delivered is missed.
func (b *bucket) start(ctx context.Context, o Options) error {
	nc := b.js.Conn()
	w := &watch{synced: make(chan struct{})}
	inbox := nc.NewInbox()
	sub, err := nc.Subscribe(inbox, func(m *nats.Msg) { b.handle(w, m, o.Now) })
	if err != nil {
		return fmt.Errorf("watch %s: %w", b.kv.Bucket(), err)
	}
	w.sub = sub
	cons, err := b.js.CreateOrUpdatePushConsumer(ctx, "KV_"+b.kv.Bucket(), jetstream.ConsumerConfig{
		DeliverSubject: inbox,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    b.rev.Load() + 1,
		AckPolicy:      jetstream.AckNonePolicy,
		FilterSubject:  b.prefix + ">",
		IdleHeartbeat:  o.Heartbeat,
		FlowControl:    true,
		MemoryStorage:  true,
		Replicas:       1,
	})
	if err != nil {
		w.stop()
		return fmt.Errorf("watch %s: %w", b.kv.Bucket(), err)
	}
	if cons.CachedInfo().NumPending == 0 {
		w.sync()
	}
	b.watch = w
	b.started.Store(o.Now().UnixNano())
	return nil
}

func (w *watch) sync() { w.once.Do(func() { close(w.synced) }) }

// stop ends the watch; once it returns, no change of the watch is handled
// any more.
func (w *watch) stop() {
	_ = w.sub.Unsubscribe()
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// stop ends the current watch.
func (b *bucket) stop() {
	if b.watch != nil {
		b.watch.stop()
		b.watch = nil
	}
}

// handle applies a change, or answers a control message.
func (b *bucket) handle(w *watch, m *nats.Msg, now func() time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.lost {
		return
	}
	b.heard.Store(now().UnixNano())
	if status := m.Header.Get("Status"); status != "" {
		b.control(w, m, status)
		return
	}
	meta, err := m.Metadata()
	if err != nil {
		return // not from the stream
	}
	if meta.Sequence.Consumer != w.dseq+1 {
		b.lose(w, "a change was skipped")
		return
	}
	w.dseq = meta.Sequence.Consumer
	if key, ok := strings.CutPrefix(m.Subject, b.prefix); ok {
		b.apply(entry{key: key, rev: meta.Sequence.Stream, deleted: deleted(m.Header), value: m.Data, created: meta.Timestamp})
	}
	b.advance(meta.Sequence.Stream)
	b.seen(meta.Timestamp)
	if meta.NumPending == 0 {
		w.sync()
	}
}

// control handles a status message: heartbeats, flow control, and the
// consumer's deletion.
func (b *bucket) control(w *watch, m *nats.Msg, status string) {
	if status != "100" {
		b.lose(w, "consumer "+strings.ToLower(m.Header.Get("Description")))
		return
	}
	if m.Reply != "" { // a flow control request
		_ = m.Respond(nil)
		return
	}
	// An idle heartbeat: it names a flow control request that went
	// unanswered, and the last change sent.
	if fc := m.Header.Get("Nats-Consumer-Stalled"); fc != "" {
		_ = b.js.Conn().Publish(fc, nil)
	}
	if last, err := strconv.ParseUint(m.Header.Get("Nats-Last-Consumer"), 10, 64); err == nil && last > w.dseq {
		b.lose(w, "a change was skipped")
	}
}

// lose marks w as going no further and says so once.
func (b *bucket) lose(w *watch, reason string) {
	w.lost = true
	b.dead(reason)
}

// deleted reports whether a change's headers mark a delete or purge.
func deleted(h nats.Header) bool {
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	switch h.Get("Nats-Marker-Reason") {
	case "MaxAge", "Purge", "Remove":
		return true
	}
	return false
}
