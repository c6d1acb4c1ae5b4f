package cli_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// rotated is the JSON of a key record with the fields rotate and
// --rate-limit none add.
type rotated struct {
	keyOut
	SuccessorID string `json:"successor_id"`
	NoRateLimit bool   `json:"no_rate_limit"`
}

func TestKeysRotateTwiceRefused(t *testing.T) {
	e := newEnv(t)
	old := e.create("--account", "acme")
	var first, second, third rotated
	e.okJSON(&first, "keys", "rotate", old.ID, "--grace", "1h")
	var o rotated
	e.okJSON(&o, "keys", "get", old.ID)
	if o.SuccessorID != first.ID {
		t.Fatalf("old key's successor_id = %q, want %s", o.SuccessorID, first.ID)
	}
	if out := e.ok("keys", "get", old.ID); !strings.Contains(out, "successor:") || !strings.Contains(out, first.ID) {
		t.Errorf("keys get does not show the successor:\n%s", out)
	}

	// Again, by id or by the key itself: refused, naming the successor.
	for _, arg := range []string{old.ID, old.Key} {
		r := e.run("keys", "rotate", arg, "--json")
		if r.code != cli.ExitFailure || !strings.Contains(r.msg, "successor is "+first.ID) ||
			!strings.Contains(r.msg, "--force") || strings.Contains(r.msg, "\n") || r.out != "" {
			t.Errorf("second rotate of %s: exit %d %q, stdout %q; want exit 1, one line naming %s", old.Masked, r.code, r.msg, r.out, first.ID)
		}
	}
	if ks := e.list("--account", "acme", "--all"); len(ks) != 2 {
		t.Errorf("after a refused rotate: %d keys, want 2", len(ks))
	}

	// --force makes another successor; the first stays active and the old
	// key keeps its earlier expiry.
	e.okJSON(&second, "keys", "rotate", old.ID, "--force", "--grace", "2h")
	e.okJSON(&o, "keys", "get", old.ID)
	if o.SuccessorID != second.ID || !o.ExpiresAt.Equal(*first.OldExpiresAt) || !second.OldExpiresAt.Equal(*first.OldExpiresAt) {
		t.Errorf("after --force: successor %s expires %v; want %s, %v", o.SuccessorID, o.ExpiresAt, second.ID, first.OldExpiresAt)
	}
	if got := e.get(first.ID); got.Status != "active" {
		t.Errorf("first successor after --force: %s", got.Status)
	}
	// The successor has no successor of its own: it rotates.
	e.okJSON(&third, "keys", "rotate", first.ID)
	if third.OldID != first.ID {
		t.Errorf("rotate of the successor: %+v", third)
	}
}

// TestKeysRotateConcurrent: of rotations of one key run at once, exactly
// one makes a successor; the others are refused, naming it.
func TestKeysRotateConcurrent(t *testing.T) {
	e := newEnv(t)
	old := e.create("--account", "acme")
	const n = 8
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = e.run("keys", "rotate", old.ID, "--json") })
	}
	wg.Wait()
	var o rotated
	e.okJSON(&o, "keys", "get", old.ID)
	if o.SuccessorID == "" {
		t.Fatal("no successor recorded")
	}
	won := 0
	for i, r := range results {
		switch {
		case r.code == 0:
			won++
			if !strings.Contains(r.out, `"id":"`+o.SuccessorID+`"`) {
				t.Errorf("rotate %d succeeded with %s, but the successor is %s", i, r.out, o.SuccessorID)
			}
		case r.code != cli.ExitFailure || !strings.Contains(r.msg, "successor is "+o.SuccessorID):
			t.Errorf("rotate %d: exit %d %q, want 0, or 1 naming %s", i, r.code, r.msg, o.SuccessorID)
		}
	}
	if won != 1 {
		t.Errorf("%d rotations succeeded, want 1", won)
	}
	if ks := e.list("--account", "acme", "--all"); len(ks) != 2 {
		t.Errorf("%d keys after %d concurrent rotations, want 2: %v", len(ks), n, ids(ks))
	}
}

// unusedOut is what --json says of a key's use.
type unusedOut struct {
	ID         string     `json:"id"`
	Unused     bool       `json:"unused"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// TestUnusedAgrees: create, rotate, get, list and revoke say the same of
// a key's use, for keys never used and keys used.
func TestUnusedAgrees(t *testing.T) {
	e := newEnv(t)
	var created, rot, got unusedOut
	e.okJSON(&created, "keys", "create", "--account", "acme")
	e.okJSON(&got, "keys", "get", created.ID)
	if !created.Unused || created != got {
		t.Errorf("new key: create says %+v, get %+v; want both unused", created, got)
	}
	e.okJSON(&rot, "keys", "rotate", created.ID)
	e.okJSON(&got, "keys", "get", rot.ID)
	if !rot.Unused || rot != got {
		t.Errorf("successor: rotate says %+v, get %+v; want both unused", rot, got)
	}
	var listed []unusedOut
	e.okJSON(&listed, "keys", "list", "--account", "acme")
	for _, l := range listed {
		if !l.Unused || l.LastUsedAt != nil {
			t.Errorf("list: %+v, want unused", l)
		}
	}

	// Used a minute ago: used, everywhere.
	used := time.Now().Add(-time.Minute).UTC().Truncate(time.Minute)
	st := e.store()
	if _, err := st.AddUsage(e.ctx, rot.ID, nil, used, map[string]int64{"ok": 1}, used); err != nil {
		t.Fatal(err)
	}
	e.okJSON(&got, "keys", "get", rot.ID)
	e.okJSON(&listed, "keys", "list", "--account", "acme")
	var revoked unusedOut
	e.okJSON(&revoked, "keys", "revoke", rot.ID)
	views := map[string]unusedOut{"get": got, "revoke": revoked}
	for _, l := range listed {
		if l.ID == rot.ID {
			views["list"] = l
		}
	}
	for _, name := range []string{"get", "list", "revoke"} {
		if v := views[name]; v.ID != rot.ID || v.Unused || v.LastUsedAt == nil || !v.LastUsedAt.Equal(used) {
			t.Errorf("%s after use: %+v, want used at %v", name, v, used)
		}
	}
}

// store opens the store e's commands use.
func (e *env) store() *store.Store {
	e.t.Helper()
	_, js := natstest.Connect(e.t, e.nats)
	st, err := store.Open(e.ctx, js, store.DefaultOptions())
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}
