package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// Store holds every key's budget for its current window, shared by the
// keygates that lease from it.
type Store interface {
	// Lease takes up to want requests of key's budget for window index
	// under limit. It returns how many it took (0 once the budget is spent)
	// and how many the fleet has taken in the window, these included.
	Lease(ctx context.Context, key string, limit Limit, index, want int64) (got, granted int64, err error)
	// Return gives back n requests leased in window index and not used.
	Return(ctx context.Context, key string, limit Limit, index, n int64) error
}

// LocalStore keeps budgets in memory, for a keygate that shares them with
// no other.
type LocalStore struct {
	mu      sync.Mutex
	budgets map[string]budget
}

// budget is what a Store keeps per key: its limit, and the requests
// leased in its latest windows (the current one and the next, which
// keygates lease a little of before it starts). In JSON the windows are
// a map from window index to requests leased.
type budget struct {
	Limit   int64
	Window  int64 // nanoseconds
	Granted [2]grant
}

// grant is the requests leased in one window; Index 0 is no window.
type grant struct{ Index, N int64 }

type budgetJSON struct {
	Limit   int64            `json:"limit"`
	Window  int64            `json:"window_ns"`
	Granted map[string]int64 `json:"granted"`
}

// MarshalJSON implements json.Marshaler: budgetJSON's form, written
// without a map (a lease writes one).
func (b budget) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, 96)
	out = append(out, `{"limit":`...)
	out = strconv.AppendInt(out, b.Limit, 10)
	out = append(out, `,"window_ns":`...)
	out = strconv.AppendInt(out, b.Window, 10)
	out = append(out, `,"granted":{`...)
	gs := b.Granted
	if gs[0].Index > gs[1].Index { // in order, as a map's keys are written
		gs[0], gs[1] = gs[1], gs[0]
	}
	first := true
	for _, g := range gs {
		if g.Index == 0 {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, '"')
		out = strconv.AppendInt(out, g.Index, 10)
		out = append(out, `":`...)
		out = strconv.AppendInt(out, g.N, 10)
	}
	return append(out, "}}"...), nil
}

// UnmarshalJSON implements json.Unmarshaler, keeping the two latest
// windows.
func (b *budget) UnmarshalJSON(data []byte) error {
	var j budgetJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*b = budget{Limit: j.Limit, Window: j.Window}
	for k, n := range j.Granted {
		idx, err := strconv.ParseInt(k, 10, 64)
		if err != nil || idx == 0 {
			return fmt.Errorf("window %q", k)
		}
		b.put(grant{idx, n})
	}
	return nil
}

// put records g, in place of the window it names or of the oldest.
func (b *budget) put(g grant) {
	slot := 0
	for i, old := range b.Granted {
		if old.Index == g.Index {
			slot = i
			break
		}
		if old.Index < b.Granted[slot].Index {
			slot = i
		}
	}
	b.Granted[slot] = g
}

// granted returns the requests leased in window index, and whether b
// holds that window.
func (b budget) granted(index int64) (int64, bool) {
	for _, g := range b.Granted {
		if g.Index == index && index != 0 {
			return g.N, true
		}
	}
	return 0, false
}

// granter is a Store that tells, without a round trip, what the fleet
// had leased of a key's window when this keygate last leased it.
type granter interface {
	// Granted returns what was leased of window index of key under
	// limit, and whether the Store knows the key's budget under limit.
	Granted(key string, limit Limit, index int64) (int64, bool)
}

// Granted implements granter.
func (s *LocalStore) Granted(key string, limit Limit, index int64) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.budgets[key].grantedUnder(limit, index)
}

// grantedUnder is what b granted of window index, and whether b tells:
// it is a budget under limit, and holds index or a window before it (b
// keeps the two latest windows leased, so one it no longer holds may
// have been leased).
func (b budget) grantedUnder(limit Limit, index int64) (int64, bool) {
	if b.Limit != limit.Requests || b.Window != int64(limit.Window) {
		return 0, false
	}
	if n, ok := b.granted(index); ok {
		return n, true
	}
	for _, g := range b.Granted {
		if g.Index != 0 && g.Index < index {
			return 0, true // nothing was leased of index
		}
	}
	return 0, false
}

var _ granter = (*LocalStore)(nil)

// NewLocalStore returns an empty LocalStore.
func NewLocalStore() *LocalStore { return &LocalStore{budgets: map[string]budget{}} }

var _ Store = (*LocalStore)(nil)

// Lease implements Store.
func (s *LocalStore) Lease(_ context.Context, key string, limit Limit, index, want int64) (int64, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, got := s.budgets[key].lease(limit, index, want)
	s.budgets[key] = b
	g, _ := b.granted(index)
	return got, g, nil
}

// Return implements Store.
func (s *LocalStore) Return(_ context.Context, key string, limit Limit, index, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.budgets[key].giveBack(limit, index, n); ok {
		s.budgets[key] = b
	}
	return nil
}

// lease takes up to want requests from b for window index under limit.
// A window two or more behind b's newest is over and grants nothing; a
// new one replaces the older of b's two. A budget for another number of
// requests per window keeps what was leased in its windows, so that
// keygates on different limits (a config change rolling out) together
// allow at most the larger; one for another window length is replaced
// whole.
func (b budget) lease(limit Limit, index, want int64) (budget, int64) {
	if b.Window != int64(limit.Window) {
		b = budget{Window: int64(limit.Window)}
	}
	b.Limit = limit.Requests
	granted, ok := b.granted(index)
	if !ok {
		for _, g := range b.Granted {
			if g.Index != 0 && index < g.Index-1 {
				return b, 0
			}
		}
		b.put(grant{index, 0})
	}
	got := min(want, b.Limit-granted)
	if got <= 0 {
		return b, 0
	}
	b.put(grant{index, granted + got})
	return b, got
}

// giveBack returns n requests to b if it still holds window index.
func (b budget) giveBack(limit Limit, index, n int64) (budget, bool) {
	granted, ok := b.granted(index)
	if b.Window != int64(limit.Window) || !ok || n <= 0 {
		return b, false
	}
	b.put(grant{index, max(granted-n, 0)})
	return b, true
}
