package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// openStores opens n stores on one NATS server, each with its own
// connection, as separate processes would.
func openStores(t *testing.T, n int) (context.Context, []*store.Store) {
	t.Helper()
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	var sts []*store.Store
	for range n {
		_, js := natstest.Connect(t, ns)
		st, err := store.Open(ctx, js, store.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		sts = append(sts, st)
	}
	return ctx, sts
}

// newKey is a valid key record for account acme, not stored.
func newKey(t *testing.T) *store.Key {
	t.Helper()
	f := apikey.DefaultFormat()
	secret, err := f.Mint(apikey.LivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	id, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return &store.Key{ID: id, Hash: apikey.Hash(secret), AccountID: "acme", Env: store.EnvLive,
		Scopes: []string{"*"}, Masked: f.Mask(secret), CreatedAt: time.Now().UTC()}
}

var errHasSuccessor = errors.New("has a successor")

// once refuses keys that already have a successor, as keys rotate does
// without --force.
func once(k *store.Key) error {
	if k.SuccessorID != "" {
		return errHasSuccessor
	}
	return nil
}

func TestRotateKey(t *testing.T) {
	ctx, sts := openStores(t, 1)
	st := sts[0]
	old, next := newKey(t), newKey(t)
	if err := st.CreateKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	got, err := st.RotateKey(ctx, old.ID, next, until, once)
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := st.KeyByID(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*store.Key{got, stored} {
		if k.SuccessorID != next.ID || k.ExpiresAt == nil || !k.ExpiresAt.Equal(until) {
			t.Errorf("old key after rotate: successor %q, expires %v; want %s, %v", k.SuccessorID, k.ExpiresAt, next.ID, until)
		}
	}
	if _, _, err := st.KeyByID(ctx, next.ID); err != nil {
		t.Errorf("successor not stored: %v", err)
	}
	// A second rotation is refused by the check and stores nothing.
	again := newKey(t)
	if _, err := st.RotateKey(ctx, old.ID, again, until.Add(time.Hour), once); !errors.Is(err, errHasSuccessor) {
		t.Fatalf("second rotate: %v, want the check's refusal", err)
	}
	if _, _, err := st.KeyByID(ctx, again.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused successor stored: %v", err)
	}
}

// A successor must have the key's allow_ips: one without would work from
// anywhere the key does not. Nothing is stored when it has not.
func TestRotateKeyKeepsAllowIPs(t *testing.T) {
	ctx, sts := openStores(t, 1)
	st := sts[0]
	old := newKey(t)
	old.V, old.AllowIPs = 2, []string{"10.0.0.0/8"}
	if err := st.CreateKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	for _, ips := range [][]string{nil, {"10.0.0.0/8", "192.0.2.0/24"}} {
		next := newKey(t)
		next.AllowIPs = ips
		if _, err := st.RotateKey(ctx, old.ID, next, until, once); err == nil || !strings.Contains(err.Error(), "has allow_ips 10.0.0.0/8: its successor must have the same") {
			t.Fatalf("successor with allow_ips %v: %v", ips, err)
		}
		if _, _, err := st.KeyByID(ctx, next.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused successor stored: %v", err)
		}
	}
	next := newKey(t)
	next.V, next.AllowIPs = 2, []string{"10.0.0.0/8"}
	if _, err := st.RotateKey(ctx, old.ID, next, until, once); err != nil {
		t.Fatal(err)
	}
}

// TestRotateKeyRace: a rotation whose compare-and-set loses to another
// checks the record again, sees the other's successor and is refused:
// only one successor is ever stored.
func TestRotateKeyRace(t *testing.T) {
	ctx, sts := openStores(t, 2)
	old, mine, theirs := newKey(t), newKey(t), newKey(t)
	if err := sts[0].CreateKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	calls := 0
	check := func(k *store.Key) error {
		if calls++; calls == 1 {
			// Between this rotation's read and its write, another
			// process rotates the key.
			if _, err := sts[1].RotateKey(ctx, old.ID, theirs, until, once); err != nil {
				t.Fatalf("the other rotation: %v", err)
			}
		}
		return once(k)
	}
	if _, err := sts[0].RotateKey(ctx, old.ID, mine, until, check); !errors.Is(err, errHasSuccessor) {
		t.Fatalf("rotate that lost the race: %v, want refused", err)
	}
	if calls != 2 {
		t.Errorf("check called %d times, want 2 (the write conflicted once)", calls)
	}
	k, _, err := sts[0].KeyByID(ctx, old.ID)
	if err != nil || k.SuccessorID != theirs.ID {
		t.Fatalf("successor_id = %q, %v; want the winner's %s", k.SuccessorID, err, theirs.ID)
	}
	if _, _, err := sts[0].KeyByID(ctx, mine.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the loser's successor was stored: %v", err)
	}
}

// TestRotateKeyUndo: when the successor cannot be stored, the old key
// gets back its successor and expiry, and the error says why.
func TestRotateKeyUndo(t *testing.T) {
	ctx, sts := openStores(t, 1)
	st := sts[0]
	old, first, clash := newKey(t), newKey(t), newKey(t)
	for _, k := range []*store.Key{old, first} {
		if err := st.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	until := time.Now().Add(time.Hour)
	if _, err := st.RotateKey(ctx, old.ID, newKey(t), until, once); err != nil {
		t.Fatal(err)
	}
	before, _, err := st.KeyByID(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	clash.Hash = first.Hash // a hash already stored: the successor's create fails
	force := func(*store.Key) error { return nil }
	if _, err := st.RotateKey(ctx, old.ID, clash, until.Add(-time.Minute), force); err == nil || !strings.Contains(err.Error(), "create key "+clash.ID) {
		t.Fatalf("rotate to a clashing successor: %v, want the create's error", err)
	}
	after, _, err := st.KeyByID(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.SuccessorID != before.SuccessorID || !after.ExpiresAt.Equal(*before.ExpiresAt) {
		t.Errorf("after a failed rotate: successor %s, expires %v; want %s, %v",
			after.SuccessorID, after.ExpiresAt, before.SuccessorID, before.ExpiresAt)
	}
}

// TestKeyRecordRateLimitFields: no_rate_limit and successor_id are read
// back as written; a record with both a limit and no_rate_limit, or a bad
// successor id, is refused.
func TestKeyRecordRateLimitFields(t *testing.T) {
	k := newKey(t)
	k.NoRateLimit, k.SuccessorID = true, "key_next"
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"no_rate_limit":true`) || !strings.Contains(string(b), `"successor_id":"key_next"`) {
		t.Errorf("record %s", b)
	}
	got, err := store.DecodeKey(b)
	if err != nil || !got.NoRateLimit || got.RateLimit != nil || got.SuccessorID != "key_next" {
		t.Fatalf("DecodeKey = %+v, %v", got, err)
	}
	plain, _ := json.Marshal(newKey(t))
	if strings.Contains(string(plain), "no_rate_limit") || strings.Contains(string(plain), "successor_id") {
		t.Errorf("a key without them writes them: %s", plain)
	}
	for _, bad := range []func(*store.Key){
		func(k *store.Key) { k.RateLimit = &store.RateLimit{Requests: 1, Window: store.Duration(time.Minute)} },
		func(k *store.Key) { k.SuccessorID = "no/such id" },
	} {
		k := *got
		bad(&k)
		b, _ := json.Marshal(&k)
		if _, err := store.DecodeKey(b); !errors.Is(err, store.ErrInvalidRecord) {
			t.Errorf("DecodeKey(%s) = %v, want ErrInvalidRecord", b, err)
		}
	}
}
