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
//
// A function that can wait a little is gathered: it starts at the next
// tick of the clock (every gather), with the others that came meanwhile,
// so that their round trips share the NATS client's and server's reads,
// writes and wake-ups. A KV write costs 2-3 times less CPU, client and
// server together, in a batch of 16 than alone (BenchmarkLeaseWrites).
type workers struct {
	work    chan task // the queue
	running atomic.Int32
	max     int32
	idle    time.Duration // how long a goroutine waits for more work
	gather  time.Duration
}

type task struct {
	f      func()
	gather bool
}

func newWorkers(max int32, queue int, idle, gather time.Duration) *workers {
	return &workers{work: make(chan task, queue), max: max, idle: idle, gather: gather}
}

// run queues f, starting a goroutine if none was free to take it and
// fewer than max run; if gather, f waits for the next tick. It reports
// false, without running f, when the queue is full.
func (w *workers) run(f func(), gather bool) bool {
	select {
	case w.work <- task{f, gather}:
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
		case tk := <-w.work:
			if tk.gather && w.gather > 0 {
				now := time.Now()
				time.Sleep(now.Truncate(w.gather).Add(w.gather).Sub(now))
			}
			tk.f()
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
