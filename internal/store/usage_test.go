package store_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// TestUsageShared: two keygates taking turns at a key's usage entry keep
// every count; once one has found the other writing it, each write costs
// it a read and a write, not a refused write as well.
func TestUsageShared(t *testing.T) {
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	var sts [2]*store.Store
	for i := range sts {
		_, js := natstest.Connect(t, ns)
		st, err := store.Open(ctx, js, store.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		sts[i] = st
	}
	day := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var last [2]*store.UsageEntry
	add := func(i int) (writes, reads uint64) {
		w0, r0 := sts[i].UsageStats()
		e, err := sts[i].AddUsage(ctx, "key_a", last[i], day, map[string]int64{"ok": 1}, day)
		if err != nil {
			t.Fatal(err)
		}
		last[i] = e
		w1, r1 := sts[i].UsageStats()
		return w1 - w0, r1 - r0
	}
	add(0)
	add(1)
	add(0) // finds 1's write: refused, read, written
	add(1)
	for round := range 3 {
		for i := range sts {
			if w, r := add(i); w != 1 || r != 1 {
				t.Errorf("round %d, keygate %d: %d writes and %d reads, want 1 and 1", round, i, w, r)
			}
		}
	}
	// Keygate 0 alone: it keeps reading first (the entry is shared).
	for range 3 {
		if w, r := add(0); w != 1 || r != 1 {
			t.Errorf("alone: %d writes and %d reads, want 1 and 1", w, r)
		}
	}
	u, err := sts[1].KeyUsage(ctx, "key_a")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Days["2026-11-27"]["ok"]; got != 13 {
		t.Errorf("%d counted, want 13", got)
	}
}
