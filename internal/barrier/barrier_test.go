package barrier

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGap(t *testing.T) {
	o := DefaultOptions
	for _, c := range []struct {
		rate float64 // waits a second
		want time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 100 * time.Millisecond}, // at most MaxGap: 10 queries a second
		{80_000, 5 * time.Millisecond},
		{40_000, 5 * time.Millisecond},
		{20_000, 10 * time.Millisecond}, // one query per 200 waits
		{4_000, 50 * time.Millisecond},
		{2_000, 100 * time.Millisecond},
		{100, 100 * time.Millisecond},
	} {
		if got := o.Gap(c.rate); got != c.want {
			t.Errorf("Gap(%v) = %v, want %v", c.rate, got, c.want)
		}
	}
}

// stream stands for a change stream: written is the store's last
// revision, applied what the stream has applied.
type stream struct {
	written, applied, queries atomic.Uint64
	online                    atomic.Bool
	b                         *Barrier
}

func newStream(t *testing.T) *stream {
	s := &stream{}
	s.online.Store(true)
	s.b = New(Sources{
		Last: func(context.Context) (uint64, error) {
			s.queries.Add(1)
			return s.written.Load(), nil
		},
		Applied: s.applied.Load,
		Online:  s.online.Load,
	}, DefaultOptions)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// apply makes the stream apply what was written, after d.
func (s *stream) apply(d time.Duration) {
	time.AfterFunc(d, func() {
		s.applied.Store(s.written.Load())
		s.b.Moved()
	})
}

// TestWaitSeesEarlierWrites: a wait returns only once every revision
// written before it began is applied.
func TestWaitSeesEarlierWrites(t *testing.T) {
	s := newStream(t)
	for i := range 20 {
		s.written.Add(1) // a key created
		s.apply(time.Duration(i) * time.Millisecond)
		want := s.written.Load()
		if err := s.b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := s.applied.Load(); got < want {
			t.Fatalf("Wait returned with revision %d applied, %d written before it", got, want)
		}
	}
}

// TestWaitsShareRounds: 500 waits at once (as fast as goroutines start)
// share a few rounds.
func TestWaitsShareRounds(t *testing.T) {
	s := newStream(t)
	var wg sync.WaitGroup
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.b.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if q := s.queries.Load(); q > 5 || q != s.b.Queries() {
		t.Fatalf("500 waits at once made %d queries (Queries says %d)", q, s.b.Queries())
	}
}

// TestWaitFails: offline, stalled and stopped barriers say so.
func TestWaitFails(t *testing.T) {
	s := newStream(t)
	s.online.Store(false)
	if err := s.b.Wait(context.Background()); !errors.Is(err, ErrOffline) {
		t.Fatalf("offline: %v", err)
	}
	s.online.Store(true)
	s.written.Add(1) // never applied: the stream is stalled
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.b.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled: %v", err)
	}

	b := New(s.b.src, DefaultOptions)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	b.Run(ctx)
	if err := b.Wait(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("stopped: %v", err)
	}
}
