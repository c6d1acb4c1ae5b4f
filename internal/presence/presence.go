// Package presence counts the keygates that share a NATS: each announces
// itself on a subject every interval and counts those it heard within
// the last few intervals, itself included. While it hears nothing (NATS
// unreachable), the count stays what it was when it last heard.
package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keygate/keygate/internal/tick"
)

// forgetAfter is how many intervals a keygate not heard from still counts.
const forgetAfter = 5

// Presence announces this keygate and counts the others.
type Presence struct {
	id    string
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	heard map[string]time.Time // keygate id -> when last heard
	last  time.Time            // when anything was last heard
}

// Start announces this keygate on subject every interval until ctx ends.
func Start(ctx context.Context, nc *nats.Conn, subject string, every time.Duration) (*Presence, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := &Presence{id: hex.EncodeToString(b), every: every, now: time.Now, heard: map[string]time.Time{}}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) { p.hear(string(m.Data)) })
	if err != nil {
		return nil, err
	}
	announce := func() { _ = nc.Publish(subject, []byte(p.id)) }
	announce()
	go func() {
		tick.Every(ctx, every, announce)
		_ = sub.Unsubscribe()
	}()
	return p, nil
}

func (p *Presence) hear(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.now()
	p.heard[id], p.last = t, t
	for k, at := range p.heard {
		if t.Sub(at) > forgetAfter*p.every {
			delete(p.heard, k)
		}
	}
}

// Count is how many keygates were heard within forgetAfter intervals of
// the last announcement heard, this one included; at least 1.
func (p *Presence) Count() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := int64(0)
	for _, at := range p.heard {
		if p.last.Sub(at) <= forgetAfter*p.every {
			n++
		}
	}
	return max(n, 1)
}

// ID is this keygate's id among the others: 16 hex characters, new at
// every start.
func (p *Presence) ID() string { return p.id }

// Alive reports whether the keygate with id was heard within forgetAfter
// intervals of the last announcement heard (this one always is).
func (p *Presence) Alive(id string) bool {
	if id == p.id {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.heard[id]
	return ok && p.last.Sub(at) <= forgetAfter*p.every
}
