// Package barrier lets a check wait until a change stream has applied every
// change written before the check began: a key created the moment before
// its first request is then known, where the in-memory answer ("no such
// key") would be stale. One store query, the stream's last revision,
// serves every check waiting at the time, and queries start at most once
// per interval, so a flood of unknown keys costs the store a fixed number
// of queries a second, not one per key.
package barrier

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Sources are what a Barrier reads.
type Sources struct {
	// Last returns the stream's last revision: one store query.
	Last func(ctx context.Context) (uint64, error)
	// Applied returns the last revision the change stream applied.
	Applied func() uint64
	// Online reports whether the store can be asked and the change
	// stream is following it.
	Online func() bool
}

// Options tune a Barrier.
type Options struct {
	// MinGap and MaxGap bound the time between the starts of two rounds,
	// and so how long a wait takes and how many store queries a second
	// the Barrier makes at most.
	MinGap, MaxGap time.Duration
	// Budget is the store queries allowed per wait served, when waits
	// come faster than MaxGap needs: the gap between rounds grows with
	// the rate of waits to stay within it.
	Budget float64
	// Timeout bounds a wait, and a round: the query and the wait for the
	// stream. It stays under the proxies' check timeouts (Envoy's shipped
	// 250 ms), so that the check is answered before they give up.
	Timeout time.Duration
}

// DefaultOptions: rounds start at most 10 times a second, or once per 200
// waits when waits come faster than 2,000 a second (at most every 5 ms).
// So a flood of unknown keys costs the store 10 queries a second or 0.5 %
// of its checks, whichever is more; a wait takes a store round trip when
// waits are rare, and up to 100 ms when they come more often than 10 a
// second. A wait is given up after 200 ms (the store or the change stream
// is stalled then, which the watcher reports on its own).
var DefaultOptions = Options{MinGap: 5 * time.Millisecond, MaxGap: 100 * time.Millisecond, Budget: 1.0 / 200, Timeout: 200 * time.Millisecond}

// ErrTimeout is a Wait that took longer than Options.Timeout.
var ErrTimeout = errors.New("barrier: the change stream did not catch up in time")

// Gap is the least time from the start of one round to the start of the
// next when waits come at rate a second: the time in which Budget
// queries per wait allow one query, within [MinGap, MaxGap].
func (o Options) Gap(rate float64) time.Duration {
	if rate <= 0 {
		return o.MaxGap
	}
	g := time.Duration(float64(time.Second) / (o.Budget * rate))
	return min(max(g, o.MinGap), o.MaxGap)
}

// Errors of Wait that no round caused.
var (
	ErrOffline = errors.New("barrier: the store is unreachable")
	ErrStopped = errors.New("barrier: stopped")
)

// Barrier coalesces waits into rounds. A round starts after every wait it
// serves began, reads the stream's last revision, and ends once the
// change stream has applied that revision.
type Barrier struct {
	src   Sources
	opt   Options
	kick  chan struct{} // a wait joined the next round
	moved chan struct{} // the change stream applied more

	mu      sync.Mutex
	next    *round // the round that new waits join; nil when none is asked for
	stopped bool   // Run has returned
	queries uint64
}

type round struct {
	done  chan struct{}
	err   error
	waits int // waits that joined
}

// New returns a Barrier reading src; Run must be running for waits to end.
func New(src Sources, opt Options) *Barrier {
	return &Barrier{src: src, opt: opt, kick: make(chan struct{}, 1), moved: make(chan struct{}, 1)}
}

// Wait returns once every change written to the stream before Wait was
// called has been applied, or with an error when that cannot be known in
// time (the store unreachable, the stream stalled, ctx ended).
func (b *Barrier) Wait(ctx context.Context) error {
	if !b.src.Online() {
		return ErrOffline
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return ErrStopped
	}
	r := b.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		b.next = r
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	r.waits++
	b.mu.Unlock()
	t := time.NewTimer(b.opt.Timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrTimeout
	}
}

// Moved tells the Barrier that the change stream applied more: call it
// after each change the stream applies.
func (b *Barrier) Moved() {
	select {
	case b.moved <- struct{}{}:
	default:
	}
}

// Queries is how many store queries the Barrier has made.
func (b *Barrier) Queries() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queries
}

// Run serves rounds until ctx ends.
func (b *Barrier) Run(ctx context.Context) {
	var last time.Time // the last round's start
	gap := b.opt.MinGap
	for {
		select {
		case <-ctx.Done():
			b.end(ctx.Err())
			return
		case <-b.kick:
		}
		if wait := time.Until(last.Add(gap)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				b.end(ctx.Err())
				return
			case <-t.C:
			}
		}
		b.mu.Lock()
		r := b.next
		b.next = nil // waits from now on join the round after this one
		b.queries++
		b.mu.Unlock()
		now := time.Now()
		gap = b.opt.Gap(float64(r.waits) / now.Sub(last).Seconds())
		last = now
		r.err = b.settle(ctx)
		close(r.done)
	}
}

// end fails the round waits have joined, if any, and every later wait.
func (b *Barrier) end(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	if b.next != nil {
		b.next.err = err
		close(b.next.done)
		b.next = nil
	}
}

// settle reads the stream's last revision and waits until it is applied.
func (b *Barrier) settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.opt.Timeout)
	defer cancel()
	target, err := b.src.Last(ctx)
	if err != nil {
		return err
	}
	// Moved is the prompt wake-up; the ticker covers revisions the stream
	// skips past without a change (a catch-up's purged deletes).
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for b.src.Applied() < target {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.moved:
		case <-t.C:
		}
	}
	return nil
}
