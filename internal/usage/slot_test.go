package usage

import (
	"context"
	"testing"
	"time"

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
