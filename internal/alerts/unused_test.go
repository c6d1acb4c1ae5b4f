package alerts_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// clock is a time the test moves.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time                { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)               { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) time.Time { return time.Unix(0, c.ns.Add(int64(d))).UTC() }

func (f *fleet) createKey(t *testing.T, id string, created time.Time) *store.Key {
	t.Helper()
	h := sha256.Sum256([]byte("ghub_sk_live_" + id))
	k := &store.Key{ID: id, Hash: hex.EncodeToString(h[:]), AccountID: "acme", Env: store.EnvLive, Scopes: []string{"*"},
		Masked: "ghub_sk_live_ab12****wxyz", CreatedAt: created}
	if err := f.st.CreateKey(f.ctx, k); err != nil {
		t.Fatal(err)
	}
	return k
}

func (f *fleet) use(t *testing.T, id string, at time.Time) {
	t.Helper()
	if _, err := f.st.AddUsage(f.ctx, id, nil, at, map[string]int64{"ok": 1}, at); err != nil {
		t.Fatal(err)
	}
}

// scanned waits until the fleet's scan has covered the time up to
// through, then until the fleet is quiet.
func (f *fleet) scanned(t *testing.T, through time.Time) {
	t.Helper()
	kv, err := f.js.KeyValue(f.ctx, "keygate_alerts")
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "a scan through "+through.String(), func() bool {
		e, err := kv.Get(f.ctx, "scan.unused")
		if err != nil {
			return false
		}
		var st struct {
			Through time.Time `json:"through"`
			Done    bool      `json:"done"`
		}
		return json.Unmarshal(e.Value(), &st) == nil && st.Done && st.Through.Equal(through)
	})
	f.quiet(t)
}

// A key unused for unused_after is reported once, by one of three
// keygates, and again only once it has been used and left unused again.
func TestUnusedKeyOnceUntilUsed(t *testing.T) {
	var c clock
	t0 := time.Now().UTC().Truncate(time.Second)
	c.set(t0)
	hook := newReceiver(t, always(200))
	f := prepare(t, hook)
	old := f.createKey(t, "key_old", t0.Add(-2*time.Hour)) // unused since t0-2h: crossed at t0-1h
	f.createKey(t, "key_new", t0.Add(-30*time.Minute))     // crosses at t0+30m
	f.createKey(t, "key_used", t0.Add(-3*time.Hour))       // used at t0-10m: crosses at t0+50m
	f.use(t, "key_used", t0.Add(-10*time.Minute))
	gone := f.createKey(t, "key_revoked", t0.Add(-5*time.Hour))
	if _, err := f.st.UpdateKey(f.ctx, gone.ID, func(k *store.Key) error { k.RevokedAt = &t0; return nil }); err != nil {
		t.Fatal(err)
	}
	f.start(t, 3, alerts.Options{UnusedAfter: time.Hour, ScanEvery: 20 * time.Millisecond, Now: c.now}, false)

	want := func(ids ...string) {
		t.Helper()
		got, _ := f.got.alerts(t)
		if len(got) != len(ids) {
			t.Fatalf("alerts %+v, want keys %v", got, ids)
		}
		seen := map[string]int{}
		for _, al := range got {
			seen[al.KeyID]++
		}
		for _, id := range ids {
			if seen[id]--; seen[id] < 0 {
				t.Fatalf("alerts %+v, want keys %v", got, ids)
			}
		}
		if len(hook.received()) != len(ids) {
			t.Fatalf("%d POSTs, want %d", len(hook.received()), len(ids))
		}
	}
	f.scanned(t, t0)
	want("key_old")
	got, msgs := f.got.alerts(t)
	if al := got[0]; al.Kind != alerts.KindUnusedKey || al.AccountID != "acme" || al.Threshold != "1h0m0s" || al.Value != "2h0m0s" ||
		al.LastUsedAt != nil || !al.At.Equal(t0) {
		t.Fatalf("alert %+v", al)
	}
	if strings.Contains(string(msgs[0].Data), old.Hash) || strings.Contains(string(msgs[0].Data), "ghub_sk") {
		t.Fatalf("an alert shows the key's hash or form: %s", msgs[0].Data)
	}

	f.scanned(t, c.add(time.Hour)) // t0+1h: two more cross; key_old does not again
	want("key_old", "key_new", "key_used")
	f.scanned(t, c.add(time.Hour)) // t0+2h: nothing new
	want("key_old", "key_new", "key_used")

	f.use(t, "key_old", c.now()) // used at t0+2h: crosses again at t0+3h
	f.scanned(t, c.add(30*time.Minute))
	want("key_old", "key_new", "key_used")
	f.scanned(t, c.add(30*time.Minute))
	want("key_old", "key_new", "key_used", "key_old")
	got, _ = f.got.alerts(t)
	if al := got[3]; al.LastUsedAt == nil || !al.LastUsedAt.Equal(t0.Add(2*time.Hour)) || al.ID == got[0].ID {
		t.Fatalf("the second alert of key_old: %+v", al)
	}
}
