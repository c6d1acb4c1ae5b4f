package ratelimit

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"time"

	"github.com/keygate/keygate/internal/exactjson"
)

// EntryVersion is the budget entry format this keygate reads and writes.
const EntryVersion = 1

// ErrNewerEntry is an entry written in a format newer than this
// keygate's: it does not lease from it rather than misread it.
var ErrNewerEntry = errors.New("budget entry of a newer format")

// ErrUnreadableEntry is an entry this keygate cannot read, or that holds
// numbers no keygate writes (a count below 0, a window of no length, a
// member twice): it does not lease from it rather than guess, since an
// entry begun afresh would grant its windows' units again.
var ErrUnreadableEntry = errors.New("budget entry keygate cannot read")

// refused reports whether err is an entry's refusal rather than the
// store's failure: not an outage, and never leased past.
func refused(err error) bool {
	return errors.Is(err, ErrNewerEntry) || errors.Is(err, ErrUnreadableEntry)
}

// Entry is a budget's record in the Store: the windows the fleet leases
// units from, as JSON that any NATS client can read:
//
//	{"v":1,"windows":[{"start_ns":1764000000000000000,"len_ns":60000000000,"limit":600,"granted":250}]}
//
// A window is governed by the limit it was begun on: every keygate leases
// from it on those terms until it ends, whatever its own configuration
// says, so keygates with different limits for a key never reset each
// other. Granted may exceed the limit: units allowed under the outage
// rule, or settled beyond what was taken, are charged to it.
type Entry struct {
	V       int      `json:"v"`
	Windows []Window `json:"windows"`
	// Done is when the last window dropped from the entry ended: no
	// window may begin before it, so that what was granted in a window
	// gone is not granted again.
	Done int64 `json:"done_ns,omitempty"`
}

// Window is one window of a budget, on the fleet's clock.
type Window struct {
	Start   int64 `json:"start_ns"` // unix nanoseconds
	Len     int64 `json:"len_ns"`
	Limit   int64 `json:"limit"`
	Granted int64 `json:"granted"`
}

// End is when w ends.
func (w Window) End() int64 { return w.Start + w.Len }

// decodeEntry reads an entry; an empty value is an empty entry.
func decodeEntry(b []byte) (Entry, error) {
	var e Entry
	if len(b) == 0 {
		return e, nil
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrUnreadableEntry, err)
	}
	if e.V > EntryVersion {
		return Entry{}, fmt.Errorf("%w (v%d)", ErrNewerEntry, e.V)
	}
	if err := exactjson.Unique(b); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrUnreadableEntry, err)
	}
	if e.Done < 0 {
		return Entry{}, fmt.Errorf("%w: done_ns below 0", ErrUnreadableEntry)
	}
	for _, w := range e.Windows {
		if w.Start < 0 || w.Len <= 0 || w.Start > math.MaxInt64-w.Len || w.Limit < 1 || w.Granted < 0 {
			return Entry{}, fmt.Errorf("%w: a window's start, length, limit or granted is out of range", ErrUnreadableEntry)
		}
	}
	return e, nil
}

// at returns the index of the window holding t, or -1.
func (e Entry) at(t int64) int {
	for i, w := range e.Windows {
		if w.Start <= t && t < w.End() {
			return i
		}
	}
	return -1
}

// window returns the window holding t: the entry's, or the one a lease
// would begin on lim.
func (e Entry) window(id string, lim Limit, t int64) Window {
	t = max(t, e.Done) // a time already closed counts in the window after
	if i := e.at(t); i >= 0 {
		return e.Windows[i]
	}
	return e.begin(id, lim, t)
}

// lease takes up to want units of the window holding t, begun on lim if
// there is none, and returns the changed entry (windows over at now
// dropped), the units taken, and the window as it now stands.
func (e Entry) lease(id string, lim Limit, t, now, want int64) (Entry, int64, Window) {
	return e.add(id, lim, t, now, func(w Window) int64 { return max(min(want, w.Limit-w.Granted), 0) })
}

// charge adds n units to the window holding t (begun on lim if there is
// none), past its limit if need be: units allowed without a lease.
func (e Entry) charge(id string, lim Limit, t, now, n int64) Entry {
	e, _, _ = e.add(id, lim, t, now, func(Window) int64 { return n })
	return e
}

// add grants the window holding t what units says of it.
func (e Entry) add(id string, lim Limit, t, now int64, units func(Window) int64) (Entry, int64, Window) {
	e = e.pruned(now)
	t = max(t, e.Done) // a time already closed counts in the window after
	i := e.at(t)
	if i < 0 {
		e.Windows = append(e.Windows, e.begin(id, lim, t))
		i = len(e.Windows) - 1
	}
	w := &e.Windows[i]
	n := units(*w)
	w.Granted += n
	return e, n, *w
}

// begin is the window that holds t, on lim: the one of lim's grid (see
// grid), cut short where it would overlap a window of the entry's or one
// gone (Done), its limit cut in proportion. Windows of lengths that divide one another
// never overlap; other lengths, and windows begun on skewed clocks, are
// cut.
func (e Entry) begin(id string, lim Limit, t int64) Window {
	start, end := lim.grid(id, t)
	full := end - start
	start = max(start, e.Done)
	for _, w := range e.Windows {
		if w.End() <= t {
			start = max(start, w.End())
		} else if w.Start > t {
			end = min(end, w.Start)
		}
	}
	n := lim.Units
	if l := end - start; l < full {
		n = max(int64(float64(n)*float64(l)/float64(full)), 1)
	}
	return Window{Start: start, Len: end - start, Limit: n}
}

// adjust adds n units (negative: handed back) to what was granted of the
// window that starts at start, if the entry still holds it: a charge may
// take granted past the limit, a hand-back never below zero.
func (e Entry) adjust(start, n, now int64) (Entry, bool) {
	e = e.pruned(now)
	for i := range e.Windows {
		if w := &e.Windows[i]; w.Start == start {
			w.Granted = max(w.Granted+n, 0)
			return e, true
		}
	}
	return e, false
}

// pruned is e without the windows over at now, in a new slice.
func (e Entry) pruned(now int64) Entry {
	out := Entry{V: EntryVersion, Windows: make([]Window, 0, len(e.Windows)+1), Done: e.Done}
	for _, w := range e.Windows {
		if w.End() > now {
			out.Windows = append(out.Windows, w)
		} else {
			out.Done = max(out.Done, w.End())
		}
	}
	return out
}

// grid returns the window of length l that holds t on id's grid: windows
// start at multiples of l, shifted by an offset drawn from id, so that
// keys' windows end at different times; the grids of lengths that divide
// one another line up.
func grid(id string, l, t int64) (start, end int64) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	off := int64(h.Sum64() % uint64(l))
	start = floorDiv(t+off, l)*l - off
	return start, start + l
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Grid returns the window of lim holding t on id's grid: the window a
// keygate begins when the budget's entry holds none that overlaps it.
func Grid(id string, lim Limit, t time.Time) (start, end time.Time) {
	s, e := lim.grid(id, t.UnixNano())
	return time.Unix(0, s), time.Unix(0, e)
}
