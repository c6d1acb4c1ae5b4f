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
	"time"

	"github.com/keygate/keygate/internal/tick"
)

// GCPercent is a sidecar's garbage-collection target when GOGC is not
// set: the heap may grow to 1.5 times what is live (Go's default is 2).
const GCPercent = 50

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
}

// quiet is the allocation rate below which keygate counts as idle:
// a few hundred checks a second allocate more.
const quiet = 1 << 20 // bytes per second

// Settle returns start-up's garbage to the operating system: call it
// once the process is ready.
func Settle() { debug.FreeOSMemory() }

// frees is how many times in a row, one interval apart, memory is handed
// back once load has fallen: what the load left behind (per-key state,
// counts not yet written) is dropped over the following seconds.
const frees = 6

// Run checks the allocation rate every interval until ctx ends; once it
// falls below quiet (and at the start, for start-up's garbage) it returns
// freed memory to the operating system, frees times one interval apart.
func Run(ctx context.Context, interval time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	last, left := read(), frees
	tick.Every(ctx, interval, func() {
		now := read()
		rate := float64(now-last) / interval.Seconds()
		last = now
		switch {
		case rate >= quiet:
			left = frees
		case left > 0:
			debug.FreeOSMemory()
			left--
		}
	})
}
