// Package memtune keeps a keygate's memory near what it uses: a tighter
// garbage-collection target than Go's default, and the heap handed back
// to the operating system once load falls off. A sidecar runs in every
// backend pod, so memory held for a past burst is paid fleet-wide.
package memtune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/tick"
)

// GCPercent is a sidecar's garbage-collection target when GOGC is not
// set: the heap may grow to 1.5 times what is live (Go's default is 2),
// or by MinHeadroom if that is more (see Run).
const GCPercent = 50

// MinHeadroom is how much a sidecar's heap may grow between collections
// at least, up to Go's default target: a small live heap (a sidecar's hot
// keys) at GCPercent alone would be collected many times a second under
// load, each collection costing about the same whatever the heap's size.
// A large one (a cache of many keys) stays at GCPercent.
const MinHeadroom = 12 << 20

// adaptive is set by Defaults when Run tunes the target to the live heap.
var adaptive atomic.Bool

// EmbeddedGCPercent is the target when NATS runs in this process: its
// store's index, large, long lived and full of pointers, is most of what
// each collection marks, so collections are made rarer (the heap may grow
// to 3 times what is live). That mode runs one keygate alone, not a
// sidecar in every pod.
const EmbeddedGCPercent = 200

// Defaults applies GCPercent, or EmbeddedGCPercent with NATS embedded,
// unless the environment sets GOGC.
func Defaults(embeddedNATS bool) {
	if os.Getenv("GOGC") != "" {
		return
	}
	if embeddedNATS {
		debug.SetGCPercent(EmbeddedGCPercent)
		return
	}
	debug.SetGCPercent(GCPercent)
	adaptive.Store(true)
}

// Percent is a sidecar's garbage-collection target for a live heap of
// live bytes: GCPercent, or what lets the heap grow by MinHeadroom, at
// most 100.
func Percent(live uint64) int {
	if live == 0 {
		return GCPercent
	}
	return int(min(max(GCPercent, MinHeadroom*100/live), 100))
}

// quiet is the allocation rate below which keygate counts as idle:
// a few hundred checks a second allocate more.
const quiet = 1 << 20 // bytes per second

// Settle returns start-up's garbage to the operating system: call it
// once the process is ready.
func Settle() { debug.FreeOSMemory() }

// frees is how many times in a row, one interval apart, memory is handed
// back once load has fallen: what the load left behind (per-key state,
// counts not yet written) is dropped over the following minute.
const frees = 12

// Run checks the allocation rate every interval until ctx ends; once it
// falls below quiet (and at the start, for start-up's garbage) it returns
// freed memory to the operating system, frees times one interval apart.
// With Defaults' sidecar target it also sets the target for the heap now
// live (Percent), and GCPercent again while it returns memory, so that
// what the load left behind is packed tighter.
func Run(ctx context.Context, interval time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	last, left, percent := read(), frees, GCPercent
	tick.Every(ctx, interval, func() {
		now := read()
		rate := float64(now-last) / interval.Seconds()
		last = now
		if adaptive.Load() {
			p := GCPercent
			if rate >= quiet {
				p = Percent(sample[1].Value.Uint64())
			}
			if p != percent {
				debug.SetGCPercent(p)
				percent = p
			}
		}
		switch {
		case rate >= quiet:
			left = frees
		case left > 0:
			debug.FreeOSMemory()
			left--
		}
	})
}
