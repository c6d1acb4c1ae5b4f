package ratelimit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const sec = int64(time.Second)

// TestEntryLease: a lease takes from the window holding its time, begun
// on the leaser's terms only when the entry holds none.
func TestEntryLease(t *testing.T) {
	lim := Limit{Units: 100, Window: 10 * time.Second}
	start, _ := grid("k", 10*sec, 1000*sec)
	var e Entry
	e, got, w := e.lease("k", lim, start+1, start+1, 60)
	if got != 60 || w.Start != start || w.Len != 10*sec || w.Limit != 100 || w.Granted != 60 {
		t.Fatalf("first lease: got %d, window %+v", got, w)
	}
	e, got, w = e.lease("k", lim, start+2, start+2, 60)
	if got != 40 || w.Granted != 100 {
		t.Fatalf("second lease: got %d, window %+v", got, w)
	}
	if _, got, _ = e.lease("k", lim, start+3, start+3, 1); got != 0 {
		t.Fatalf("a spent window granted %d", got)
	}
	// Another keygate's terms do not change a window begun: it leases on
	// the window's.
	other := Limit{Units: 1000, Window: 20 * time.Second}
	if _, got, w = e.lease("k", other, start+4, start+4, 5); got != 0 || w.Limit != 100 || w.Len != 10*sec {
		t.Fatalf("a keygate on other terms got %d of %+v", got, w)
	}
	// The next window is begun on the terms of whoever leases it first,
	// and the one over is dropped.
	e, got, w = e.lease("k", other, start+10*sec, start+10*sec, 5)
	if got != 5 || w.Start != start+10*sec || w.Limit < 1 || len(e.Windows) != 1 {
		t.Fatalf("next window: got %d, %+v, entry %+v", got, w, e)
	}
}

// TestEntryBeginCutsOverlaps: a window begun on terms whose grid does not
// line up with the entry's windows is cut where it would overlap them,
// its limit in proportion.
func TestEntryBeginCutsOverlaps(t *testing.T) {
	l10 := Limit{Units: 100, Window: 10 * time.Second}
	l15 := Limit{Units: 150, Window: 15 * time.Second}
	s10, e10 := grid("k", 10*sec, 5000*sec)
	var e Entry
	e, _, _ = e.lease("k", l10, s10, s10, 1)
	// Lease ahead on 15 s terms at the 10 s window's end.
	_, _, w := e.lease("k", l15, e10, s10, 1)
	s15, end15 := grid("k", 15*sec, e10)
	if w.Start != max(s15, e10) || w.End() != end15 || w.Limit != 150*(end15-w.Start)/(15*sec) {
		t.Fatalf("window begun after a 10 s window on 15 s terms: %+v (grid %d-%d, 10 s window ends %d)", w, s15, end15, e10)
	}
	// A window begun before one leased ahead ends where that one begins.
	var f Entry
	f, _, ahead := f.lease("k", l15, s10+20*sec, s10, 1)
	_, _, w = f.lease("k", l10, ahead.Start-1, s10, 1)
	if w.End() != ahead.Start || w.Start > ahead.Start-1 {
		t.Fatalf("window %+v overlaps the one leased ahead %+v", w, ahead)
	}
}

func TestEntryChargeAndAdjust(t *testing.T) {
	lim := Limit{Units: 10, Window: time.Minute}
	s, _ := grid("k", int64(time.Minute), 100*sec)
	var e Entry
	e, _, _ = e.lease("k", lim, s, s, 10)
	e = e.charge("k", lim, s, s, 5) // allowed under the outage rule: past the limit
	if w := e.Windows[0]; w.Granted != 15 {
		t.Fatalf("charged: %+v", w)
	}
	e, ok := e.adjust(s, -20, s)
	if !ok || e.Windows[0].Granted != 0 {
		t.Fatalf("handed back: %+v, %v", e, ok)
	}
	if _, ok := e.adjust(s+1, -1, s); ok {
		t.Fatal("adjusted a window the entry does not hold")
	}
	if _, ok := e.adjust(s, -1, s+int64(time.Minute)); ok {
		t.Fatal("adjusted a window that is over")
	}
}

// TestEntryJSON: the entry's format, as any NATS client reads it.
func TestEntryJSON(t *testing.T) {
	e := Entry{V: 1, Windows: []Window{{Start: 1764000000000000000, Len: 60 * sec, Limit: 600, Granted: 250}}}
	got, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "entry.json")
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != string(want) {
		t.Fatalf("entry JSON:\n%s\nwant (%s):\n%s", got, golden, want)
	}
	back, err := decodeEntry(want)
	if err != nil || len(back.Windows) != 1 || back.Windows[0] != e.Windows[0] {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	if _, err := decodeEntry([]byte(`{"v":2,"windows":[]}`)); !errors.Is(err, ErrNewerEntry) {
		t.Fatalf("a newer entry: %v", err)
	}
}

func TestGridNests(t *testing.T) {
	for _, id := range []string{"a", "key_1", "key_xyz"} {
		for ts := int64(0); ts < 200*sec; ts += 7 * sec / 3 {
			s1, e1 := grid(id, 10*sec, ts)
			s2, e2 := grid(id, 20*sec, ts)
			if s1 < s2 || e1 > e2 {
				t.Fatalf("%s at %d: 10 s window %d-%d is not inside the 20 s one %d-%d", id, ts, s1, e1, s2, e2)
			}
		}
	}
}
