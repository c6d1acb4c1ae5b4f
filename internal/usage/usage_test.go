package usage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/internal/usage"
)

func openStore(t *testing.T) (*store.Store, context.Context) {
	t.Helper()
	ns := natstest.Run(t)
	_, js := natstest.Connect(t, ns)
	ctx := natstest.Context(t)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return st, ctx
}

// TestFlushMergesKeygates: two keygates count checks of the same key; each
// flush adds its counts to the one record, by outcome and day, with the
// last use to the minute.
func TestFlushMergesKeygates(t *testing.T) {
	st, ctx := openStore(t)
	now := time.Date(2026, 11, 26, 10, 42, 31, 0, time.UTC)
	clock := func() time.Time { return now }
	a, b := usage.New(st, clock, nil), usage.New(st, clock, nil)
	var sa, sb usage.Slot
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 250 {
				a.Count(&sa, "key_1", "ok")
				b.Count(&sb, "key_1", "ok")
			}
		})
	}
	wg.Wait()
	a.Count(&sa, "key_1", "rate_limit_exceeded")
	b.Count(&sb, "key_1", "not-an-outcome")
	for _, r := range []*usage.Recorder{a, b} {
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	u, err := st.KeyUsage(ctx, "key_1")
	if err != nil {
		t.Fatal(err)
	}
	day := u.Days["2026-11-26"]
	if day["ok"] != 2000 || day["rate_limit_exceeded"] != 1 || len(day) != 2 {
		t.Fatalf("counts %v", u.Days)
	}
	if u.LastUsedAt == nil || !u.LastUsedAt.Equal(now.Truncate(time.Minute)) {
		t.Fatalf("last used %v", u.LastUsedAt)
	}
	// A flush with nothing new writes nothing; the next day's counts go to
	// that day.
	now = now.Add(24 * time.Hour)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a.Count(&sa, "key_1", "insufficient_balance")
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	u, _ = st.KeyUsage(ctx, "key_1")
	if u.Days["2026-11-27"]["insufficient_balance"] != 1 || u.Days["2026-11-26"]["ok"] != 2000 || !u.LastUsedAt.Equal(now.Truncate(time.Minute)) {
		t.Fatalf("after a day: %v, last used %v", u.Days, u.LastUsedAt)
	}
}

// TestIdleCountersRetire: a key idle for a flush is dropped, and its next
// check is still counted, through the same slot.
func TestIdleCountersRetire(t *testing.T) {
	st, ctx := openStore(t)
	r := usage.New(st, nil, nil)
	var slot usage.Slot
	r.Count(&slot, "key_2", "ok")
	for range 5 {
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.Count(&slot, "key_2", "ok")
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u, _ := st.KeyUsage(ctx, "key_2"); u.Days[time.Now().UTC().Format(store.DayFormat)]["ok"] != 2 {
		t.Fatalf("counts %v", u.Days)
	}
}

// TestFailedFlushKeepsCounts: counts a flush could not write are written
// by the next one.
func TestFailedFlushKeepsCounts(t *testing.T) {
	w := &flaky{fail: true}
	r := usage.New(w, nil, nil)
	var slot usage.Slot
	r.Count(&slot, "key_3", "ok")
	r.Count(&slot, "key_3", "ok")
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("a failed write went unreported")
	}
	w.fail = false
	r.Count(&slot, "key_3", "ok")
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.written["ok"] != 3 {
		t.Fatalf("written %v, want 3 ok", w.written)
	}
}

// flaky fails writes while fail is set and keeps the others.
type flaky struct {
	fail    bool
	written map[string]int64
}

func (f *flaky) AddUsage(_ context.Context, _ string, _ *store.UsageEntry, _ time.Time, counts map[string]int64, _ time.Time) (*store.UsageEntry, error) {
	if f.fail {
		return nil, errors.New("nats: timeout")
	}
	if f.written == nil {
		f.written = map[string]int64{}
	}
	for o, n := range counts {
		f.written[o] += n
	}
	return &store.UsageEntry{}, nil
}

// TestOneWriteAMinute: the periodic flush writes a key at most once a
// minute; a use in a new minute is written at the next flush, and Flush
// (at shutdown) writes whatever is left.
func TestOneWriteAMinute(t *testing.T) {
	st, ctx := openStore(t)
	now := time.Date(2026, 11, 26, 10, 42, 1, 0, time.UTC)
	r := usage.New(st, func() time.Time { return now }, nil)
	var slot usage.Slot
	ok := func() int64 {
		u, _ := st.KeyUsage(ctx, "key_3")
		return u.Days["2026-11-26"]["ok"]
	}
	steps := []struct {
		after       time.Duration
		checks      int
		flushAll    bool
		writes, got int64
	}{
		{0, 1, false, 1, 1},                // first use: written at once
		{20 * time.Second, 1, false, 1, 1}, // same minute: waits
		{40 * time.Second, 1, false, 2, 3}, // next minute
		{10 * time.Second, 1, false, 2, 3}, // waits
		{0, 0, true, 3, 4},                 // Flush writes it
		{0, 0, false, 3, 4},                // nothing left
	}
	for i, s := range steps {
		now = now.Add(s.after)
		for range s.checks {
			r.Count(&slot, "key_3", "ok")
		}
		flush := r.FlushDue
		if s.flushAll {
			flush = r.Flush
		}
		if err := flush(ctx); err != nil {
			t.Fatal(err)
		}
		if r.Writes() != uint64(s.writes) || ok() != s.got {
			t.Fatalf("step %d: %d writes, %d ok in the store; want %d, %d", i, r.Writes(), ok(), s.writes, s.got)
		}
	}
}
