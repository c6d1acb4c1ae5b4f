package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkers: every function runs, and a goroutine done with one waits
// for the next.
func TestWorkers(t *testing.T) {
	w := newWorkers(time.Minute)
	var ran atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		w.run(func() { ran.Add(1); wg.Done() })
	}
	wg.Wait()
	if ran.Load() != 100 {
		t.Fatalf("ran %d of 100", ran.Load())
	}
	done := make(chan struct{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case w.work <- func() { close(done) }:
			<-done
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no goroutine waits for more work")
		}
		time.Sleep(time.Millisecond)
	}
}
