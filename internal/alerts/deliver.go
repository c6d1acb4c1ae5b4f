package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// consumerName is the durable consumer of claims that every keygate
// reads: each claim goes to one of them at a time.
const consumerName = "keygate_alerts"

// What a claim's kind and id must look like: a kind names a subject, an
// id goes in headers.
var (
	kindToken = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
	idText    = regexp.MustCompile(`^[A-Za-z0-9_.=-]{1,255}$`)
)

// consume delivers claims until stop is called, creating the consumer
// (retrying while ctx lasts: NATS may be away at start).
func (a *Alerts) consume(ctx context.Context) (stop func()) {
	for {
		stop, err := a.tryConsume(ctx)
		if err == nil {
			return stop
		}
		if ctx.Err() != nil {
			return func() {}
		}
		a.failed("reading the claims", err)
		select {
		case <-ctx.Done():
			return func() {}
		case <-time.After(time.Second):
		}
	}
}

func (a *Alerts) tryConsume(ctx context.Context) (func(), error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := a.js.CreateOrUpdateConsumer(cctx, a.kv.name, jetstream.ConsumerConfig{
		Durable: consumerName, Description: "keygate alerts to publish, one keygate each",
		FilterSubject: a.kv.prefix + claimPrefix + ">", AckPolicy: jetstream.AckExplicitPolicy,
		// No bound on claims held: each keygate bounds its webhook
		// deliveries (Queue), and a bound here would hold up the NATS
		// messages of new alerts behind retries.
		AckWait: a.o.AckWait, MaxAckPending: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", consumerName, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { a.deliver(m) })
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", consumerName, err)
	}
	return cc.Stop, nil
}

// deliver publishes a claimed alert and hands it to the webhooks; it is
// acknowledged once every webhook is done with it.
func (a *Alerts) deliver(m jetstream.Msg) {
	if deleted(m.Headers()) {
		_ = m.Ack() // a claim gone at its TTL
		return
	}
	var al struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(m.Data(), &al); err != nil || !idText.MatchString(al.ID) || !kindToken.MatchString(al.Kind) {
		a.o.Log.Warn("alerts: an unreadable claim is dropped", "subject", m.Subject())
		_ = m.Term()
		return
	}
	msg := nats.NewMsg(SubjectPrefix + al.Kind)
	msg.Data = m.Data()
	msg.Header.Set(jetstream.MsgIDHeader, al.ID) // a stream that keeps alerts drops a second delivery
	if err := a.nc.PublishMsg(msg); err != nil {
		_ = m.NakWithDelay(time.Second)
		return
	}
	if err := a.nc.FlushTimeout(5 * time.Second); err != nil {
		_ = m.NakWithDelay(time.Second)
		return
	}
	a.stats.published(al.Kind)
	if len(a.o.Webhooks) == 0 {
		_ = m.Ack()
		return
	}
	a.send.enqueue(m.Data(), al.ID, a.jobs.add(m, len(a.o.Webhooks)))
}

// jobs are the claims taken and not yet acknowledged: JetStream is told
// they are in progress, so that they are not given to another keygate
// while webhooks retry.
type jobs struct {
	mu   sync.Mutex
	live map[*job]struct{}
}

type job struct {
	m       jetstream.Msg
	left    atomic.Int32 // webhooks not done with it
	stopped atomic.Bool  // a webhook was interrupted: another keygate delivers it again
	jobs    *jobs
}

func newJobs() *jobs { return &jobs{live: map[*job]struct{}{}} }

// add keeps m until n webhooks are done with it, and returns what each
// calls when it is.
func (js *jobs) add(m jetstream.Msg, n int) func(stopped bool) {
	j := &job{m: m, jobs: js}
	j.left.Store(int32(n))
	js.mu.Lock()
	js.live[j] = struct{}{}
	js.mu.Unlock()
	return j.done
}

// done: one webhook is done with j (stopped: interrupted, as keygate
// stops). The last acknowledges it, or hands it back if any was
// interrupted.
func (j *job) done(stopped bool) {
	if stopped {
		j.stopped.Store(true)
	}
	if j.left.Add(-1) != 0 {
		return
	}
	j.jobs.mu.Lock()
	delete(j.jobs.live, j)
	j.jobs.mu.Unlock()
	if j.stopped.Load() {
		_ = j.m.Nak()
		return
	}
	_ = j.m.Ack()
}

// progress tells JetStream that every claim held is in progress.
func (js *jobs) progress() {
	js.mu.Lock()
	live := make([]*job, 0, len(js.live))
	for j := range js.live {
		live = append(live, j)
	}
	js.mu.Unlock()
	for _, j := range live {
		_ = j.m.InProgress()
	}
}

func (js *jobs) idle() bool {
	js.mu.Lock()
	defer js.mu.Unlock()
	return len(js.live) == 0
}
