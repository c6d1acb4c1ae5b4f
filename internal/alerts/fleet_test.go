package alerts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

const secret = "whsec-0123456789abcdef0123456789abcdef"

// fleet is n keygates' alerts on one NATS, a subscriber of every alert
// and a webhook receiver.
type fleet struct {
	ctx   context.Context
	ns    *server.Server
	st    *store.Store // the test's own
	js    jetstream.JetStream
	kgs   []*alerts.Alerts
	stops []func() // each keygate's: stops it and waits until it has
	got   *inbox
	hook  *receiver
}

// newFleet starts n keygates' alerts with o (Store and the webhook
// filled in), each following the accounts bucket with a watcher of its
// own if watch is set.
func newFleet(t *testing.T, n int, o alerts.Options, hook *receiver, watch bool) *fleet {
	t.Helper()
	f := prepare(t, hook)
	f.start(t, n, o, watch)
	return f
}

// prepare starts NATS, the subscriber and the test's store.
func prepare(t *testing.T, hook *receiver) *fleet {
	t.Helper()
	f := &fleet{ctx: natstest.Context(t), ns: natstest.Run(t), hook: hook}
	var nc *nats.Conn
	nc, f.js = natstest.Connect(t, f.ns)
	f.st = openStore(t, f.ctx, f.js)
	f.got = subscribe(t, nc)
	return f
}

// start starts n keygates' alerts.
func (f *fleet) start(t *testing.T, n int, o alerts.Options, watch bool) {
	t.Helper()
	if f.hook != nil {
		o.Webhooks = []alerts.Webhook{{URL: f.hook.srv.URL + "/keygate", Secret: secret}}
	}
	for range n {
		_, js := natstest.Connect(t, f.ns)
		o := o
		o.Store = openStore(t, f.ctx, js)
		a, err := alerts.Open(f.ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if watch {
			w, err := events.Start(f.ctx, o.Store, events.Handlers{Account: a.Account}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Stop)
		}
		ctx, stop := context.WithCancel(f.ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.Run(ctx)
		}()
		t.Cleanup(func() { stop(); <-done })
		f.kgs = append(f.kgs, a)
		f.stops = append(f.stops, func() { stop(); <-done })
	}
}

func openStore(t *testing.T, ctx context.Context, js jetstream.JetStream) *store.Store {
	t.Helper()
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// quiet waits until every keygate has nothing left to do and every
// claim has been delivered and acknowledged, then until the subscriber
// has every alert published.
func (f *fleet) quiet(t *testing.T) {
	t.Helper()
	poll.Until(t, 20*time.Second, "alerts delivered", func() bool {
		for _, a := range f.kgs {
			if !a.Idle() {
				return false
			}
		}
		return f.claimsAcked()
	})
	f.got.flush(t)
}

// claimsAcked reports whether the consumer has acknowledged every claim
// in the bucket. Its pending count alone is not enough: the server
// counts a stored message towards it a moment later, in a goroutine of
// its own.
func (f *fleet) claimsAcked() bool {
	stream, err := f.js.Stream(f.ctx, "KV_keygate_alerts")
	if err != nil {
		return false
	}
	var last uint64
	switch m, err := stream.GetLastMsgForSubject(f.ctx, "$KV.keygate_alerts.c.>"); {
	case err == nil:
		last = m.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return false
	}
	cons, err := stream.Consumer(f.ctx, "keygate_alerts") // made as the keygates start
	if err != nil {
		return false
	}
	info, err := cons.Info(f.ctx)
	return err == nil && info.AckFloor.Stream >= last && info.NumAckPending == 0
}

// inbox collects the alerts published on NATS.
type inbox struct {
	nc   *nats.Conn
	sub  *nats.Subscription
	mu   sync.Mutex
	msgs []*nats.Msg
}

func subscribe(t *testing.T, nc *nats.Conn) *inbox {
	t.Helper()
	in := &inbox{nc: nc}
	sub, err := nc.Subscribe(alerts.SubjectPrefix+">", func(m *nats.Msg) {
		in.mu.Lock()
		in.msgs = append(in.msgs, m)
		in.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	in.sub = sub
	return in
}

// flush waits until every alert published so far has been received.
func (in *inbox) flush(t *testing.T) {
	t.Helper()
	if err := in.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "the subscriber caught up", func() bool {
		n, _, err := in.sub.Pending()
		return err == nil && n == 0
	})
}

// alerts returns the alerts received, decoded, with their messages.
func (in *inbox) alerts(t *testing.T) ([]alerts.Alert, []*nats.Msg) {
	t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []alerts.Alert
	for _, m := range in.msgs {
		var al alerts.Alert
		if err := json.Unmarshal(m.Data, &al); err != nil {
			t.Fatalf("alert %s: %v", m.Data, err)
		}
		if m.Subject != alerts.SubjectPrefix+al.Kind || m.Header.Get("Nats-Msg-Id") != al.ID {
			t.Fatalf("alert %s on %s, message id %q", m.Data, m.Subject, m.Header.Get("Nats-Msg-Id"))
		}
		out = append(out, al)
	}
	return out, append([]*nats.Msg(nil), in.msgs...)
}

func (in *inbox) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)
}

// receiver is a webhook: it checks each POST's signature and answers as
// answer says.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	posts   []post
	bad     atomic.Int64    // POSTs whose signature did not verify
	answer  func(n int) int // the status of the nth POST (from 1); 0: never answers
	release chan struct{}   // closed at the end: a receiver that never answers lets go
}

type post struct {
	id   string
	body []byte
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	r := &receiver{answer: answer, release: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	t.Cleanup(func() { close(r.release) }) // before Close: cleanups run last first
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	err := alerts.Verify(secret, req.Header.Get(alerts.HeaderTimestamp), req.Header.Get(alerts.HeaderSignature), body, time.Now(), 5*time.Minute)
	if err != nil || req.Method != http.MethodPost || req.URL.Path != "/keygate" || req.Header.Get("Content-Type") != "application/json" {
		r.bad.Add(1)
	}
	r.mu.Lock()
	r.posts = append(r.posts, post{id: req.Header.Get(alerts.HeaderID), body: body})
	n := len(r.posts)
	r.mu.Unlock()
	status := r.answer(n)
	if status == 0 {
		select {
		case <-req.Context().Done():
		case <-r.release:
		}
		return
	}
	w.WriteHeader(status)
}

func (r *receiver) received() []post {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]post(nil), r.posts...)
}

func always(status int) func(int) int { return func(int) int { return status } }

// waitAlerts waits until the subscriber has n alerts.
func (f *fleet) waitAlerts(t *testing.T, n int) {
	t.Helper()
	poll.Until(t, 20*time.Second, fmt.Sprintf("%d alerts published", n), func() bool { return f.got.count() >= n })
}
