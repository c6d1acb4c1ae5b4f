package audit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// open starts a NATS server and opens the trail on it.
func open(t *testing.T, o Options) (*Log, jetstream.JetStream) {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Run(t))
	l, err := Open(natstest.Context(t), js, o)
	if err != nil {
		t.Fatal(err)
	}
	return l, js
}

// stored returns every message of the stream as stored.
func stored(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := natstest.Context(t)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func record(kind, id, action string) Record {
	return Record{Actor: Actor{Kind: ActorCLI, User: "ana", Host: "laptop"}, Action: action, Target: Target{Kind: kind, ID: id}}
}

func TestStreamConfig(t *testing.T) {
	_, js := open(t, Options{})
	ctx := natstest.Context(t)
	st, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if len(c.Subjects) != 1 || c.Subjects[0] != "keygate_audit.>" || c.MaxAge != 400*24*time.Hour || c.MaxBytes != 1<<30 ||
		c.Discard != jetstream.DiscardOld || !c.DenyDelete || !c.DenyPurge || c.Replicas != 1 || c.Storage != jetstream.FileStorage {
		t.Errorf("stream config %+v", c)
	}
	// Opening again brings the limits to the options.
	if _, err := Open(ctx, js, Options{MaxAge: 30 * 24 * time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err = js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.MaxAge != 30*24*time.Hour || c.MaxBytes != 1<<20 || !c.DenyDelete || !c.DenyPurge {
		t.Errorf("reopened stream config %+v", c)
	}
}

func TestOptionsRefused(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Run(t))
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Stream: "a.b"}, "audit stream"},
		{Options{Stream: "a*"}, "audit stream"},
		{Options{Replicas: -1}, "audit replicas"},
		{Options{Replicas: 7}, "audit replicas"},
		{Options{MaxAge: -time.Hour}, "audit max age"},
		{Options{MaxBytes: -1}, "audit max bytes"},
	} {
		if _, err := Open(natstest.Context(t), js, tc.o); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want an error about %s", tc.o, err, tc.want)
		}
	}
}

func TestDeleteAndPurgeRefused(t *testing.T) {
	l, js := open(t, Options{})
	ctx := natstest.Context(t)
	if err := l.Append(ctx, record(TargetKey, "key_a", KeyRevoke)); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, l.Stream())
	if err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"delete":              st.DeleteMsg(ctx, 1),
		"secure delete":       st.SecureDeleteMsg(ctx, 1),
		"purge":               st.Purge(ctx),
		"purge of a subject":  st.Purge(ctx, jetstream.WithPurgeSubject("keygate_audit.key.key_a")),
		"purge to a sequence": st.Purge(ctx, jetstream.WithPurgeSequence(2)),
	} {
		if err == nil {
			t.Errorf("%s was allowed", what)
		}
	}
	cfg := st.CachedInfo().Config
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := js.UpdateStream(ctx, cfg); err == nil {
		t.Error("the stream let deletes and purges be allowed again")
	}
	if n := len(stored(t, js, l.Stream())); n != 1 {
		t.Errorf("%d records left, want 1", n)
	}
}

// TestAppendDropsSecrets appends the creation of a real key record, with
// the plaintext beside it as a careless caller might pass it, and finds
// neither the key nor its hash in the stored bytes.
func TestAppendDropsSecrets(t *testing.T) {
	l, js := open(t, Options{})
	ctx := natstest.Context(t)
	f := apikey.DefaultFormat()
	plain, err := f.Mint(apikey.LivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	id, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	k := &store.Key{ID: id, Hash: apikey.Hash(plain), AccountID: "acme", Env: store.EnvLive, Scopes: []string{"*"},
		Masked: f.Mask(plain), CreatedAt: time.Now().UTC(), TokenLimit: &store.TokenLimit{Tokens: 5000, Window: store.Duration(time.Hour)}}
	_, after := Diff(nil, k)
	after["key"] = plain
	after["extra"] = map[string]any{"key_hash": k.Hash, "copy": plain, "list": []string{plain}}
	r := record(TargetKey, id, KeyCreate)
	r.After = after
	if err := l.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	msgs := stored(t, js, l.Stream())
	if len(msgs) != 1 {
		t.Fatalf("%d records stored, want 1", len(msgs))
	}
	data := string(msgs[0].Data)
	for what, s := range map[string]string{"the key": plain, "its hash": k.Hash, `"hash":`: `"hash":`, `"key":`: `"key":`} {
		if strings.Contains(data, s) {
			t.Errorf("%s is in the stored record: %s", what, data)
		}
	}
	for _, s := range []string{`"masked":"` + k.Masked + `"`, `"token_limit":{"tokens":5000`, `"id":"` + id + `"`, `"account_id":"acme"`} {
		if !strings.Contains(data, s) {
			t.Errorf("%s is not in the stored record: %s", s, data)
		}
	}
	if msgs[0].Subject != "keygate_audit.key."+id {
		t.Errorf("subject %s", msgs[0].Subject)
	}
}

func TestAppendRefused(t *testing.T) {
	l, js := open(t, Options{})
	ctx := natstest.Context(t)
	plain, err := apikey.DefaultFormat().Mint(apikey.TestPrefix)
	if err != nil {
		t.Fatal(err)
	}
	hash := apikey.Hash(plain)
	for name, change := range map[string]func(*Record){
		"action":             func(r *Record) { r.Action = "revoke" },
		"action upper case":  func(r *Record) { r.Action = "Key.Revoke" },
		"action with a dot":  func(r *Record) { r.Action = "key.revoke.now" },
		"target kind":        func(r *Record) { r.Target.Kind = "user" },
		"empty target id":    func(r *Record) { r.Target.ID = "" },
		"target id with dot": func(r *Record) { r.Target.ID = "key_a.b" },
		"target id wildcard": func(r *Record) { r.Target.ID = ">" },
		"target id is a key": func(r *Record) { r.Target.ID = plain },
		"target id a hash":   func(r *Record) { r.Target.ID = hash },
		"id is a key":        func(r *Record) { r.ID = plain },
		"id with space":      func(r *Record) { r.ID = "aud 1" },
		"actor kind":         func(r *Record) { r.Actor.Kind = "" },
		"actor id is a key":  func(r *Record) { r.Actor.ID = plain },
		"actor user newline": func(r *Record) { r.Actor.User = "ana\nkeygate" },
		"actor host escape":  func(r *Record) { r.Actor.Host = "\x1b[31mhost" },
		"actor user is key":  func(r *Record) { r.Actor.User = plain },
		"actor host long":    func(r *Record) { r.Actor.Host = strings.Repeat("h", 300) },
		"after unencodable":  func(r *Record) { r.After = map[string]any{"f": func() {}} },
	} {
		r := record(TargetKey, "key_a", KeyRevoke)
		change(&r)
		err := l.Append(ctx, r)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Append = %v, want ErrInvalid", name, err)
			continue
		}
		if strings.Contains(err.Error(), plain) || strings.Contains(err.Error(), hash) {
			t.Errorf("%s: the error names the secret: %v", name, err)
		}
	}
	if n := len(stored(t, js, l.Stream())); n != 0 {
		t.Errorf("%d records stored, want 0", n)
	}
}

func TestAppendStoresOnce(t *testing.T) {
	now := time.Date(2025, 5, 1, 8, 0, 0, 0, time.FixedZone("CST", -6*3600))
	l, js := open(t, Options{Now: func() time.Time { return now }})
	ctx := natstest.Context(t)
	r := record(TargetAccount, "acme", BalanceSet)
	r.ID = NewID()
	for range 3 {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Append(ctx, record(TargetAccount, "acme", BalanceAdd)); err != nil { // without an id: gets one
		t.Fatal(err)
	}
	var got []Record
	for rec, err := range l.Read(ctx, Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if len(got) != 2 || got[0].ID != r.ID || !strings.HasPrefix(got[1].ID, "aud_") || got[1].ID == r.ID {
		t.Fatalf("records %+v", got)
	}
	if !got[1].At.Equal(now) || got[1].At.Location() != time.UTC {
		t.Errorf("at %v, want %v in UTC", got[1].At, now)
	}
	if n := len(stored(t, js, l.Stream())); n != 2 {
		t.Errorf("%d messages stored, want 2", n)
	}
}

func TestBind(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Run(t))
	ctx := natstest.Context(t)
	if _, err := Bind(ctx, js, Options{}); !errors.Is(err, ErrNoStream) {
		t.Fatalf("Bind before Open = %v, want ErrNoStream", err)
	}
	if _, err := js.Stream(ctx, DefaultStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Bind created the stream: %v", err)
	}
	w, err := Open(ctx, js, Options{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, record(TargetToken, "tok_1", TokenCreate)); err != nil {
		t.Fatal(err)
	}
	r, err := Bind(ctx, js, Options{}) // default options: the stream keeps its own
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range r.Read(ctx, Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	st, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || st.CachedInfo().Config.MaxAge != time.Hour {
		t.Errorf("read %d records, max age %s", n, st.CachedInfo().Config.MaxAge)
	}
}

func TestCLIActor(t *testing.T) {
	a := CLIActor()
	if a.Kind != ActorCLI || a.Host == "" {
		t.Errorf("CLIActor = %+v", a)
	}
}
