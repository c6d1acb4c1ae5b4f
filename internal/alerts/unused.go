package alerts

import (
	"context"
	"strconv"
	"time"
)

// Unused keys are found by a scan that one keygate of the fleet makes at a
// time, each over the span of time since the last: the scan's entry in
// the bucket (scan.unused: {"from":...,"through":...,"done":true,"at":...})
// is taken by compare-and-set. A key unused for UnusedAfter crosses at its
// last use (else its creation) plus UnusedAfter; a scan over (from,
// through] reports the keys that crossed in it and are still unused, so
// that spans that follow one another report each crossing once, and a key
// crosses again only after it is used again.

// scanState is the scan's entry: the span (From, Through] scanned or
// being scanned, and when its scan began.
type scanState struct {
	From    time.Time `json:"from"`
	Through time.Time `json:"through"`
	Done    bool      `json:"done"`
	At      time.Time `json:"at"`
}

const (
	// scanLooks: a keygate looks whether a scan is due this many times
	// per ScanEvery, so that one is late by a fraction of it at most.
	scanLooks = 6
	// scanTimeout is how long a scan may go unfinished before another
	// keygate makes it again (claims already made are not made twice).
	scanTimeout = 10 * time.Minute
	// unusedClaimTTL is how long an unused-key claim lives: spans never
	// overlap, so only a scan made again needs it.
	unusedClaimTTL = 7 * 24 * time.Hour
)

// scanUnused makes the scan if it is due and this keygate takes it.
func (a *Alerts) scanUnused(ctx context.Context) error {
	now := a.o.Now().UTC()
	var st scanState
	rev, found, err := a.kv.get(ctx, scanKey, &st)
	if err != nil {
		return err
	}
	switch {
	case !found:
		st = scanState{Through: now, At: now}
	case st.Done && now.Sub(st.Through) >= a.o.ScanEvery:
		st = scanState{From: st.Through, Through: now, At: now}
	case !st.Done && now.Sub(st.At) >= scanTimeout:
		st.At = now // the keygate making it went quiet: made again
	default:
		return nil
	}
	if rev, err = a.kv.put(ctx, scanKey, st, rev, 0); err != nil {
		if err == errConflict {
			return nil // another keygate took it
		}
		return err
	}
	if err := a.findUnused(ctx, st.From, st.Through); err != nil {
		return err
	}
	st.Done = true
	if _, err := a.kv.put(ctx, scanKey, st, rev, 0); err != errConflict {
		return err
	}
	return nil
}

// findUnused claims the alert of every active key that crossed in (from,
// through] and was not used since.
func (a *Alerts) findUnused(ctx context.Context, from, through time.Time) error {
	keys, err := a.o.Store.ListKeys(ctx)
	if err != nil {
		return err
	}
	uses, err := a.o.Store.ListUsage(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Revoked() || k.Expired(through) {
			continue
		}
		last, used := k.CreatedAt, (*time.Time)(nil)
		if u := uses[k.ID]; u != nil && u.LastUsedAt != nil && u.LastUsedAt.After(last) {
			last, used = *u.LastUsedAt, u.LastUsedAt
		}
		if cross := last.Add(a.o.UnusedAfter); !cross.After(from) || cross.After(through) {
			continue
		}
		al := &Alert{ID: KindUnusedKey + "." + k.ID + "." + strconv.FormatInt(last.Unix(), 10), Kind: KindUnusedKey,
			AccountID: k.AccountID, KeyID: k.ID, Threshold: a.o.UnusedAfter.String(),
			Value: through.Sub(last).Round(time.Second).String(), LastUsedAt: used, At: through}
		if err := a.claim(ctx, al, unusedClaimTTL); err != nil {
			return err
		}
	}
	return nil
}
