package ratelimit

import "time"

// workers runs functions on goroutines that stay a while once done, for
// the next: a lease's round trip through the NATS client grows a new
// goroutine's stack several times over, which at hundreds of leases a
// second costs more than the work around it.
type workers struct {
	work chan func()
	idle time.Duration // how long a goroutine waits for more work
}

func newWorkers(idle time.Duration) *workers {
	return &workers{work: make(chan func()), idle: idle}
}

// run runs f on a waiting goroutine, or a new one if none waits.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
	default:
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(w.idle)
		select {
		case f = <-w.work:
		case <-t.C:
			return
		}
	}
}
