package events

import (
	"context"
	"fmt"
	"time"
)

// watchdog reports a watch that has fallen behind its bucket and made no
// progress for a whole interval (its consumer was on a server that went
// away while the connection stayed up), buckets that cannot be read for
// three intervals, and replaces a watch that has said nothing for three
// heartbeats. While NATS is away or the buckets cannot be read, a watch
// is expected to be silent: that time does not count.
func (w *Watcher) watchdog(stalled func()) {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	behind := make([]uint64, len(w.buckets)) // rev seen behind at the last tick; 0: not behind
	failures := 0
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		up := w.nc.IsConnected()
		stall := false
		for i, b := range w.buckets {
			rev, last, err := w.progress(b)
			now := w.opts.Now()
			if !up || err != nil {
				b.heard.Store(now.UnixNano())
			}
			switch {
			case err != nil:
				failures++
				stall = stall || failures == 3
			case rev >= last:
				behind[i], failures = 0, 0
			case rev == behind[i]:
				w.log.Warn("change stream stalled", "bucket", b.kv.Bucket(), "applied", rev, "last", last)
				behind[i], stall = 0, true
			default:
				behind[i] = rev
			}
			b.checkSilence(now, 3*w.opts.Heartbeat)
		}
		if stall {
			stalled()
		}
	}
}

// progress returns the revision b has applied and the bucket's last one.
func (w *Watcher) progress(b *bucket) (rev, last uint64, err error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.opts.Interval)
	defer cancel()
	last, err = lastRevision(ctx, b.kv)
	return b.rev.Load(), last, err
}

// checkSilence gives up on b's watch if it has said nothing for limit
// since it began or NATS was last away: its consumer is gone.
func (b *bucket) checkSilence(now time.Time, limit time.Duration) {
	since := max(b.heard.Load(), b.started.Load())
	if now.UnixNano()-since <= int64(limit) || !b.mu.TryLock() { // locked: being replaced
		return
	}
	defer b.mu.Unlock()
	if w := b.watch; w != nil {
		w.mu.Lock()
		if !w.lost && !w.stopped {
			b.lose(w, fmt.Sprintf("no heartbeat for %s", limit))
		}
		w.mu.Unlock()
	}
}

// Stuck returns an error naming a watch that has shown no sign of life
// for Options.StuckAfter while NATS was connected and its bucket readable:
// its consumer is gone, and replacing it has not helped. It returns nil
// otherwise, and once the watches are stopped.
func (w *Watcher) Stuck() error {
	if w.stopped.Load() || w.ctx.Err() != nil {
		return nil
	}
	now := w.opts.Now().UnixNano()
	for _, b := range w.buckets {
		if d := time.Duration(now - b.heard.Load()); d > w.opts.StuckAfter {
			return fmt.Errorf("the change stream of %s has shown no sign of life for %s while NATS answered",
				b.kv.Bucket(), d.Round(time.Second))
		}
	}
	return nil
}
