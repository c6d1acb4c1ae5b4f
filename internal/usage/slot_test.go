package usage

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// discard is a Writer that keeps nothing.
type discard struct{}

func (discard) AddUsage(context.Context, string, *store.UsageEntry, time.Time, map[string]int64, time.Time) (*store.UsageEntry, error) {
	return &store.UsageEntry{}, nil
}

// TestRetireEmptiesSlot: a retired Counter is no longer held by the Slot
// a cached key keeps, and the key's next check counts in a new one.
func TestRetireEmptiesSlot(t *testing.T) {
	r := New(discard{}, nil, nil)
	var slot Slot
	r.Count(&slot, "key_1", "ok")
	retired := slot.c.Load()
	for range 2 { // the first writes the count, the second finds the key idle
		if err := r.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if slot.c.Load() != nil {
		t.Fatal("the slot still holds a retired counter")
	}
	r.Count(&slot, "key_1", "ok")
	if c := slot.c.Load(); c == nil || c == retired {
		t.Fatal("the next check did not count in a new counter")
	}
}

// summing is a Writer that adds up what it is given.
type summing struct {
	mu sync.Mutex
	n  int64
}

func (s *summing) AddUsage(_ context.Context, _ string, _ *store.UsageEntry, _ time.Time, counts map[string]int64, _ time.Time) (*store.UsageEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range counts {
		s.n += n
	}
	return &store.UsageEntry{}, nil
}

func (s *summing) total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// TestRetiredGoAfterGrace: Run drops a retired Counter a moment after
// retiring it, writing first what a late check counted in it.
func TestRetiredGoAfterGrace(t *testing.T) {
	w := &summing{}
	r := New(w, nil, nil)
	var slot Slot
	r.Count(&slot, "key_1", "ok")
	c := slot.c.Load()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, retireGrace*3/2) // longer than the grace: Run drops them itself
	poll.Until(t, 10*time.Second, "retired", func() bool { return c.dead.Load() })
	c.n[0].Add(1) // a check that found c just before it was retired
	poll.Until(t, 10*time.Second, "dropped", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.retired) == 0 && w.total() == 2
	})
}

// TestQuietKeyGoes: a key that counted nothing since the last flush is
// dropped at the next, with the counts that waiting for the next minute's
// write left written after it: a burst's keys leave memory within two
// flush intervals, not a minute. Back in use, it is written once a minute
// as before.
func TestQuietKeyGoes(t *testing.T) {
	w := &summing{}
	now := time.Date(2026, 11, 26, 10, 42, 1, 0, time.UTC)
	r := New(w, func() time.Time { return now }, nil)
	var slot Slot
	flush := func() {
		t.Helper()
		if err := r.FlushDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	r.Count(&slot, "key_1", "ok")
	flush() // written
	now = now.Add(10 * time.Second)
	r.Count(&slot, "key_1", "ok")
	flush() // same minute: waits
	if w.total() != 1 || slot.c.Load() == nil {
		t.Fatalf("after the second check: %d written, counter held %v", w.total(), slot.c.Load() != nil)
	}
	now = now.Add(10 * time.Second)
	flush() // quiet: retired, its count due
	if slot.c.Load() != nil {
		t.Fatal("a quiet key's counter is still held")
	}
	flush() // the retired counter's count is written, and it goes
	r.mu.Lock()
	left := len(r.retired) + len(r.counts)
	r.mu.Unlock()
	if w.total() != 2 || left != 0 {
		t.Fatalf("%d written, %d counters left; want 2, 0", w.total(), left)
	}
	// Back in the minute it was written: it waits for the next minute, as
	// a key that stayed in use would.
	r.Count(&slot, "key_1", "ok")
	flush()
	if w.total() != 2 {
		t.Fatalf("written again in the same minute: %d", w.total())
	}
	now = now.Add(time.Minute)
	r.Count(&slot, "key_1", "ok")
	flush()
	if w.total() != 4 {
		t.Fatalf("%d written in the next minute, want 4", w.total())
	}
}

// TestWritesSpreadOverMinute: with every key in constant use, the keys'
// writes of a new minute go out through its first 20 s, a few each
// second, rather than all at once, each key once, and every key is
// written within 21 s of the minute's start (its last use must show
// within 30 s). A key still in use is not retired meanwhile.
func TestWritesSpreadOverMinute(t *testing.T) {
	w := &summing{}
	now := time.Date(2026, 11, 26, 10, 41, 59, 0, time.UTC)
	r := New(w, func() time.Time { return now }, nil)
	r.spread = spreadOver
	const keys = 2000
	slots := make([]Slot, keys)
	use := func() {
		for i := range slots {
			r.Count(&slots[i], fmt.Sprintf("key_%d", i), "ok")
		}
	}
	use()
	if err := r.Flush(context.Background()); err != nil { // written in the minute before
		t.Fatal(err)
	}
	var most int64
	for s := 1; s <= 30; s++ {
		now = now.Add(time.Second)
		use()
		before := r.Writes()
		if err := r.flush(context.Background(), false, s%10 == 0); err != nil {
			t.Fatal(err)
		}
		most = max(most, int64(r.Writes()-before))
		if s == 22 && r.Writes() != 2*keys {
			t.Fatalf("%d writes by 21 s into the minute, want %d", r.Writes()-keys, keys)
		}
	}
	if r.Writes() != 2*keys || most > keys/10 {
		t.Fatalf("%d writes in the minute, at most %d in a second; want %d, at most %d", r.Writes()-keys, most, keys, keys/10)
	}
	if n := len(r.all()); n != keys {
		t.Fatalf("%d counters left of %d keys in use", n, keys)
	}
}
