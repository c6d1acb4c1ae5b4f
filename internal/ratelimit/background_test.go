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
	w := newWorkers(4, 200, 50*time.Millisecond)
	var ran, busy, most atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 100 {
		wg.Add(1)
		if !w.run(func() {
			defer wg.Done()
			n := busy.Add(1)
			defer busy.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			ran.Add(1)
		}) {
			t.Fatal("turned away with room in the queue")
		}
	}
	close(release)
	wg.Wait()
	if ran.Load() != 100 || most.Load() > 4 {
		t.Fatalf("ran %d of 100, at most %d at once (limit 4)", ran.Load(), most.Load())
	}
	poll.Until(t, 10*time.Second, "the goroutines gone", func() bool { return w.running.Load() == 0 })

	full := newWorkers(1, 1, time.Minute)
	block := make(chan struct{})
	defer close(block)
	full.run(func() { <-block })
	poll.Until(t, 10*time.Second, "the first taken", func() bool { return len(full.work) == 0 })
	if !full.run(func() {}) || full.run(func() {}) {
		t.Fatal("a full queue took a function, or a free one did not")
	}
}
