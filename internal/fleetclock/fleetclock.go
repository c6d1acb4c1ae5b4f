// Package fleetclock keeps the time that the keygates sharing a NATS
// agree on: the NATS server's. It estimates the offset of this keygate's
// clock from the server's timestamp on a KV write of its own, taken
// halfway between the write's start and its acknowledgement (to within
// half a round trip), and adds it to its own clock's readings.
package fleetclock

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/tick"
)

// Entry is the KV entry the probes write.
const Entry = "clock"

// warnAbove is the offset beyond which a keygate's clock is reported.
const warnAbove = time.Second

// Clock is the fleet's clock.
type Clock struct {
	kv       jetstream.KeyValue
	local    func() time.Time
	log      *slog.Logger
	offset   atomic.Int64 // nanoseconds to add to local
	measured atomic.Bool
}

// New returns a Clock reading local (time.Now if nil), with no offset
// until Measure.
func New(kv jetstream.KeyValue, local func() time.Time, log *slog.Logger) *Clock {
	if local == nil {
		local = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Clock{kv: kv, local: local, log: log}
}

// Now is the fleet's time.
func (c *Clock) Now() time.Time { return c.local().Add(c.Offset()) }

// Offset is what is added to this keygate's clock.
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// Measure writes the probe entry and reads its server timestamp back. A
// probe another keygate overwrote meanwhile leaves the offset as it was.
func (c *Clock) Measure(ctx context.Context) error {
	sent := c.local()
	rev, err := c.kv.Put(ctx, Entry, nil)
	acked := c.local()
	if err != nil {
		return err
	}
	e, err := c.kv.Get(ctx, Entry)
	if err != nil || e.Revision() != rev {
		return err
	}
	off := e.Created().Sub(sent.Add(acked.Sub(sent) / 2))
	old := time.Duration(c.offset.Swap(int64(off)))
	if first := !c.measured.Swap(true); abs(off) > warnAbove && (first || abs(old) <= warnAbove) {
		c.log.Warn("this keygate's clock is off the NATS server's; rate-limit windows follow the server's", "offset", off.String())
	}
	return nil
}

// Run measures every interval until ctx ends.
func (c *Clock) Run(ctx context.Context, every time.Duration) {
	tick.Every(ctx, every, func() {
		mctx, cancel := context.WithTimeout(ctx, every/2)
		defer cancel()
		if err := c.Measure(mctx); err != nil {
			c.log.Debug("measuring the clock offset", "err", err)
		}
	})
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
