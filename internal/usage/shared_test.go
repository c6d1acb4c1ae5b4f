package usage

import (
	"testing"
	"time"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// TestFleetSharedReadsFirst: once a write finds another keygate's in its
// way, a keygate reads each entry before writing it, new keys included,
// keeps only the entry's revision, and has no write refused; a lone
// keygate writes without reading.
func TestFleetSharedReadsFirst(t *testing.T) {
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	open := func() *store.Store {
		_, js := natstest.Connect(t, ns)
		st, err := store.Open(ctx, js, store.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	sa, sb := open(), open()
	now := time.Date(2026, 11, 26, 10, 42, 31, 0, time.UTC)
	clock := func() time.Time { return now }
	a, b := New(sa, clock, nil), New(sb, clock, nil)
	var slotA, slotB, slotA2 Slot
	count := func(r *Recorder, s *Slot, key string) {
		t.Helper()
		r.Count(s, key, "ok")
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ops := func() (uint64, uint64) { return sa.UsageStats() }

	count(a, &slotA, "key_1") // a lone keygate: a read (new here) and a write
	w0, r0 := ops()
	count(a, &slotA, "key_1")
	if w, r := ops(); w-w0 != 1 || r != r0 {
		t.Fatalf("alone: %d writes, %d reads; want 1, 0", w-w0, r-r0)
	}
	count(b, &slotB, "key_1")
	count(a, &slotA, "key_1") // refused, read, written: the fleet shares keys
	count(a, &slotA2, "key_2")
	if e := slotA2.c.Load().last; e == nil || !e.Shared || e.Value != nil {
		t.Fatalf("a new key's entry while shared: %+v", e)
	}
	count(b, &slotB, "key_1")
	w0, r0 = ops()
	count(a, &slotA, "key_1")
	if w, r := ops(); w-w0 != 1 || r-r0 != 1 {
		t.Fatalf("shared: %d writes, %d reads; want 1, 1", w-w0, r-r0)
	}
	u, err := sa.KeyUsage(ctx, "key_1")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Days["2026-11-26"]["ok"]; got != 6 {
		t.Fatalf("key_1 counted %d, want 6", got)
	}
}
