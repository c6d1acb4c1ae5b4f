package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keygate/keygate/internal/store"
)

// Key statuses.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Bounds of a page of keys.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Filter selects keys.
type Filter struct {
	Account  string   // "": every account
	Statuses []string // empty: any status
	// Unused, if positive, keeps only keys not used for that long, or
	// never used.
	Unused time.Duration
}

// Check checks the filter.
func (f *Filter) Check() error {
	if f.Account != "" {
		if err := CheckAccountID("account", f.Account); err != nil {
			return err
		}
	}
	for _, st := range f.Statuses {
		if st != StatusActive && st != StatusRevoked && st != StatusExpired {
			return invalid("status", "%q is not active, revoked or expired", st)
		}
	}
	if f.Unused < 0 {
		return invalid("unused", "must not be negative")
	}
	return nil
}

// hint reports whether an index entry may match: its account, and its
// status as the index last saw it.
func (f *Filter) hint(e indexEntry, now time.Time) bool {
	if f.Account != "" && e.account != f.Account {
		return false
	}
	if len(f.Statuses) == 0 {
		return true
	}
	st := StatusActive
	switch {
	case e.revoked:
		st = StatusRevoked
	case e.expires != 0 && now.UnixNano() >= e.expires:
		st = StatusExpired
	}
	return slices.Contains(f.Statuses, st)
}

// match reports whether a key's view matches.
func (f *Filter) match(v KeyView, now time.Time) bool {
	if f.Account != "" && v.AccountID != f.Account {
		return false
	}
	if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, v.Status) {
		return false
	}
	return f.Unused <= 0 || v.LastUsedAt == nil || now.Sub(*v.LastUsedAt) >= f.Unused
}

// Page is a page of keys, in the order of their ids.
type Page struct {
	Keys []KeyView
	// Next is the cursor of the next page; "" after the last. A page may
	// hold fewer keys than asked for (its keys were read past a bound,
	// or changed since the index saw them) and still have a next.
	Next string
}

// scanFactor bounds the keys a page reads: limit times this, at least
// MaxPageSize, so that a filter on use that matches few keys answers in
// bounded time, with a cursor to go on from.
const scanFactor = 10

// fetchers is how many records a page reads at once.
const fetchers = 32

// ListKeys returns up to limit keys that match f, from after the key the
// cursor names (from the first with ""), in the order of their ids.
func (s *Service) ListKeys(ctx context.Context, f Filter, cursor string, limit int) (Page, error) {
	if err := f.Check(); err != nil {
		return Page{}, err
	}
	if limit < 1 || limit > MaxPageSize {
		return Page{}, invalid("limit", "%d is not from 1 to %d", limit, MaxPageSize)
	}
	after, err := decodeCursor(cursor)
	if err != nil {
		return Page{}, err
	}
	x, err := s.index(ctx)
	if err != nil {
		return Page{}, err
	}
	now := s.now()
	page := Page{Keys: []KeyView{}}
	budget := max(limit*scanFactor, MaxPageSize)
	for budget > 0 {
		cs, more := x.next(after, &f, now, min(limit-len(page.Keys), budget))
		views, err := s.fetch(ctx, x, cs)
		if err != nil {
			return Page{}, err
		}
		budget -= len(cs)
		for i, v := range views {
			after = cs[i].id
			if v != nil && f.match(*v, now) {
				page.Keys = append(page.Keys, *v)
			}
		}
		if !more {
			return page, nil
		}
		if len(page.Keys) == limit {
			break
		}
	}
	page.Next = encodeCursor(after)
	return page, nil
}

// index is the live key index, or a snapshot read now.
func (s *Service) index(ctx context.Context) (*keyIndex, error) {
	if s.live != nil {
		return s.live, s.live.wait(ctx)
	}
	return snapshotIndex(ctx, s.st)
}

// Follow starts keeping an index of the keys and their last uses
// current, for listings that do not read the whole buckets each time; it
// ends with ctx.
func (s *Service) Follow(ctx context.Context) error {
	x := newKeyIndex(false)
	if err := x.follow(ctx, s.st); err != nil {
		return err
	}
	s.live = x
	return nil
}

// fetch reads the candidates' records, fetchers at a time, and makes
// their views with their last uses as the index has them. A key whose
// record is gone has a nil view, and leaves the index.
func (s *Service) fetch(ctx context.Context, x *keyIndex, cs []candidate) ([]*KeyView, error) {
	views := make([]*KeyView, len(cs))
	now := s.now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchers)
	for i, c := range cs {
		g.Go(func() error {
			k := c.rec
			if k == nil {
				var err error
				k, _, err = s.st.KeyByHash(gctx, c.hash)
				switch {
				case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalidRecord):
					x.drop(c.id)
					return nil
				case err != nil:
					return err
				}
			}
			u := &store.Usage{KeyID: c.id}
			if c.used != 0 {
				t := time.Unix(0, c.used).UTC()
				u.LastUsedAt = &t
			}
			v := ViewKey(k, u, now)
			views[i] = &v
			return nil
		})
	}
	return views, g.Wait()
}

// cursorPrefix starts every cursor: its version.
const cursorPrefix = "k1:"

func encodeCursor(after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + after))
}

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	after, ok := strings.CutPrefix(string(b), cursorPrefix)
	if err != nil || !ok || after == "" {
		return "", invalid("cursor", "%s is not a cursor this API gave", strconv.Quote(c))
	}
	return after, nil
}

// ParseAge reads a duration written as Go does ("36h") or in days
// ("90d"); "" is 0.
func ParseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 1 || d > 100*365 {
			return 0, fmt.Errorf("%q is not a number of days like 90d", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration like 90d or 36h", s)
	}
	return d, nil
}
