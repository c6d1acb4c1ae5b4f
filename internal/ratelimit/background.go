package ratelimit

import (
	"sync/atomic"
	"time"
)

// workers runs functions on at most max goroutines, which stay a while
// once done for the next: a lease's round trip through the NATS client
// grows a new goroutine's stack several times over, which at hundreds of
// leases a second costs more than the work around it. Functions that find
// every goroutine busy wait in a queue, so that a burst of leases (every
// key's lease ahead near a window's end) does not start a goroutine, and
// grow a stack, for each.
type workers struct {
	work    chan func() // the queue
	running atomic.Int32
	max     int32
	idle    time.Duration // how long a goroutine waits for more work
}

func newWorkers(max int32, queue int, idle time.Duration) *workers {
	return &workers{work: make(chan func(), queue), max: max, idle: idle}
}

// run queues f, starting a goroutine if none was free to take it and
// fewer than max run. It reports false, without running f, when the queue
// is full.
func (w *workers) run(f func()) bool {
	select {
	case w.work <- f:
	default:
		return false
	}
	if len(w.work) > 0 { // no goroutine was waiting for it
		w.grow()
	}
	return true
}

// grow starts a goroutine unless max run.
func (w *workers) grow() {
	for n := w.running.Load(); n < w.max; n = w.running.Load() {
		if w.running.CompareAndSwap(n, n+1) {
			go w.loop()
			return
		}
	}
}

func (w *workers) loop() {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		select {
		case f := <-w.work:
			f()
			t.Reset(w.idle)
		case <-t.C:
			w.running.Add(-1)
			if len(w.work) > 0 { // queued while every other was busy
				w.grow()
			}
			return
		}
	}
}
