package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/poll"
)

// TestWorkers: every function queued runs, on no more goroutines than
// the limit, a full queue turns functions away, and goroutines done with
// one wait for the next, then leave.
func TestWorkers(t *testing.T) {
	w := newWorkers(4, 200, 50*time.Millisecond, time.Millisecond)
	var ran, busy, most atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	for i := range 100 {
		wg.Add(1)
		if !w.run(func() {
			defer wg.Done()
			n := busy.Add(1)
			defer busy.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			ran.Add(1)
		}, i%2 == 0) {
			t.Fatal("turned away with room in the queue")
		}
	}
	close(release)
	wg.Wait()
	if ran.Load() != 100 || most.Load() > 4 {
		t.Fatalf("ran %d of 100, at most %d at once (limit 4)", ran.Load(), most.Load())
	}
	poll.Until(t, 10*time.Second, "the goroutines gone", func() bool { return w.running.Load() == 0 })

	full := newWorkers(1, 1, time.Minute, 0)
	block := make(chan struct{})
	defer close(block)
	full.run(func() { <-block }, false)
	poll.Until(t, 10*time.Second, "the first taken", func() bool { return len(full.work) == 0 })
	if !full.run(func() {}, false) || full.run(func() {}, false) {
		t.Fatal("a full queue took a function, or a free one did not")
	}
}

// TestWorkersGather: functions that may wait, queued at different times,
// start together at the next tick; one that may not starts at once.
func TestWorkersGather(t *testing.T) {
	const gather = 200 * time.Millisecond
	w := newWorkers(8, 100, time.Minute, gather)
	// Start just after a tick, so that every function is taken well
	// before the next.
	now := time.Now()
	time.Sleep(now.Truncate(gather).Add(gather + 10*time.Millisecond).Sub(now))
	gathered, direct := make(chan time.Time, 4), make(chan time.Time, 1)
	for range 4 {
		w.run(func() { gathered <- time.Now() }, true)
		time.Sleep(5 * time.Millisecond)
	}
	queued := time.Now()
	w.run(func() { direct <- time.Now() }, false)
	if d := (<-direct).Sub(queued); d > gather/2 {
		t.Errorf("a function that may not wait started after %v", d)
	}
	first := <-gathered
	for range 3 {
		if s := <-gathered; s.Truncate(gather) != first.Truncate(gather) {
			t.Fatalf("gathered functions started at %v and %v, not at one tick of %v", first, s, gather)
		}
	}
	if first.Sub(queued) < 0 {
		t.Errorf("a gathered function started before the tick")
	}
}
