package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Usage is a key's use as every keygate recorded it, stored as JSON under
// the key id in the usage bucket:
// {"key_id":"key_...","last_used_at":"2026-11-26T10:42:00Z","days":{"2026-11-26":{"ok":120,"rate_limit_exceeded":3}}}.
// Days are UTC dates; counts are by outcome ("ok" or the deny's error
// code) and cover the last MaxUsageDays days.
type Usage struct {
	KeyID      string                      `json:"key_id"`
	LastUsedAt *time.Time                  `json:"last_used_at,omitempty"`
	Days       map[string]map[string]int64 `json:"days"`
}

// MaxUsageDays is how many days of counts a usage record keeps.
const MaxUsageDays = 90

// DayFormat writes a usage record's days.
const DayFormat = "2006-01-02"

// Add adds counts by outcome for day and moves the last use to used if
// that is later, then drops days older than MaxUsageDays before day.
func (u *Usage) Add(day time.Time, counts map[string]int64, used time.Time) {
	if u.Days == nil {
		u.Days = map[string]map[string]int64{}
	}
	d := day.UTC().Format(DayFormat)
	if len(counts) > 0 && u.Days[d] == nil {
		u.Days[d] = map[string]int64{}
	}
	for code, n := range counts {
		u.Days[d][code] += n
	}
	if !used.IsZero() && (u.LastUsedAt == nil || used.After(*u.LastUsedAt)) {
		t := used.UTC()
		u.LastUsedAt = &t
	}
	oldest := day.UTC().AddDate(0, 0, -MaxUsageDays+1).Format(DayFormat)
	for k := range u.Days {
		if k < oldest {
			delete(u.Days, k)
		}
	}
}

// Dates returns the record's days in order.
func (u *Usage) Dates() []string {
	var ds []string
	for d := range u.Days {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return ds
}

// KeyUsage returns the usage record of key id; a key never used has an
// empty one.
func (s *Store) KeyUsage(ctx context.Context, id string) (*Usage, error) {
	u, _, err := s.usageEntry(ctx, id)
	return u, err
}

func (s *Store) usageEntry(ctx context.Context, id string) (*Usage, uint64, error) {
	e, err := s.rawUsage(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	return decodeUsage(id, e.Value), e.Rev, nil
}

// rawUsage reads key id's usage entry as stored.
func (s *Store) rawUsage(ctx context.Context, id string) (*UsageEntry, error) {
	s.usageReads.Add(1)
	e, err := s.usage.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return &UsageEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("usage of %s: %w", id, err)
	}
	return &UsageEntry{Value: e.Value(), Rev: e.Revision()}, nil
}

// decodeUsage reads key id's usage record from its JSON; an unreadable
// or missing one reads as empty, so that counting starts afresh rather
// than stops.
func decodeUsage(id string, data []byte) *Usage {
	u := &Usage{}
	if json.Unmarshal(data, u) != nil || u.KeyID != id {
		u = &Usage{KeyID: id}
	}
	if u.Days == nil {
		u.Days = map[string]map[string]int64{}
	}
	return u
}

// UsageEntry is a usage record, as JSON, at a revision of its entry.
// Kept as written (a hundred bytes or so) rather than decoded, it is
// small enough to hold for every key in use.
type UsageEntry struct {
	Value []byte // nil: no entry yet
	Rev   uint64 // 0: no entry yet
	// Shared: another keygate has written the entry since this one
	// first did, so each write reads it first (a read and a write, rather
	// than a refused write, a read and a write, as writes a minute apart
	// from two keygates would mostly be); Value is then not kept. It
	// lasts as long as the caller keeps the entry (a key's counter is
	// dropped once the key is idle).
	Shared bool
}

// AddUsage merges counts (by outcome, for day) and a last use into key
// id's usage record with compare-and-set, starting from last (the entry
// as the caller last wrote it; nil to read it) and reading it afresh if
// another keygate wrote since. It returns the entry as written.
func (s *Store) AddUsage(ctx context.Context, id string, last *UsageEntry, day time.Time, counts map[string]int64, used time.Time) (*UsageEntry, error) {
	shared := last != nil && last.Shared
	if shared {
		last = nil
	}
	for {
		if last == nil {
			var err error
			if last, err = s.rawUsage(ctx, id); err != nil {
				return nil, err
			}
		}
		u := decodeUsage(id, last.Value)
		u.Add(day, counts, used)
		b, _ := json.Marshal(u)
		var rev uint64
		var err error
		s.usageWrites.Add(1)
		if last.Rev == 0 {
			rev, err = s.usage.Create(ctx, id, b)
		} else {
			rev, err = s.usage.Update(ctx, id, b, last.Rev)
		}
		switch {
		case err == nil:
			if shared { // read before the next write: only the revision is needed
				b = nil
			}
			return &UsageEntry{Value: b, Rev: rev, Shared: shared}, nil
		case !isConflict(err):
			return nil, wrap(err, "record usage of "+id)
		}
		last, shared = nil, true
	}
}

// UsageStats returns how many writes (conflicts included) and reads of
// usage entries this store has sent to the bucket.
func (s *Store) UsageStats() (writes, reads uint64) {
	return s.usageWrites.Load(), s.usageReads.Load()
}

// ListUsage returns every usage record by key id.
func (s *Store) ListUsage(ctx context.Context) (map[string]*Usage, error) {
	w, err := s.usage.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list usage: %w", err)
	}
	defer w.Stop() //nolint:errcheck // nothing to do about a failed unsubscribe
	out := map[string]*Usage{}
	for e := range w.Updates() {
		if e == nil {
			return out, nil
		}
		u := &Usage{}
		if json.Unmarshal(e.Value(), u) == nil && u.KeyID == e.Key() {
			out[u.KeyID] = u
		}
	}
	return nil, fmt.Errorf("list usage: %w", ctx.Err())
}
