package audit

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
)

// readAll reads f and returns the records' actions and targets, and the
// errors.
func readAll(t *testing.T, l *Log, f Filter) ([]string, []error) {
	t.Helper()
	var got []string
	var errs []error
	for r, err := range l.Read(natstest.Context(t), f) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, r.Action+" "+r.Target.Kind+"/"+r.Target.ID)
	}
	return got, errs
}

func TestRead(t *testing.T) {
	l, js := open(t, Options{})
	ctx := natstest.Context(t)
	if got, errs := readAll(t, l, Filter{}); len(got)+len(errs) != 0 {
		t.Fatalf("empty trail: %v %v", got, errs)
	}
	for _, r := range []Record{
		record(TargetKey, "key_a", KeyCreate),
		record(TargetAccount, "acme", BalanceSet),
		record(TargetKey, "key_b", KeyCreate),
		record(TargetKey, "key_a", KeyRevoke),
		record(TargetToken, "key_a", TokenCreate), // a token whose id is a key's
		record(TargetAccount, "acme", BalanceAdd),
	} {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	first := stored(t, js, l.Stream())[0].Time
	for _, tc := range []struct {
		name string
		f    Filter
		want string
	}{
		{"all", Filter{}, "[key.create key/key_a balance.set account/acme key.create key/key_b key.revoke key/key_a token.create token/key_a balance.add account/acme]"},
		{"one key", Filter{Kind: TargetKey, TargetID: "key_a"}, "[key.create key/key_a key.revoke key/key_a]"},
		{"one account, not last", Filter{Kind: TargetAccount, TargetID: "acme", Limit: 1}, "[balance.set account/acme]"},
		{"kind", Filter{Kind: TargetAccount}, "[balance.set account/acme balance.add account/acme]"},
		{"id of any kind", Filter{TargetID: "key_a"}, "[key.create key/key_a key.revoke key/key_a token.create token/key_a]"},
		{"no match", Filter{Kind: TargetKey, TargetID: "key_z"}, "[]"},
		{"limit", Filter{Limit: 2}, "[key.create key/key_a balance.set account/acme]"},
		{"since the first", Filter{Since: first, Kind: TargetKey, TargetID: "key_b"}, "[key.create key/key_b]"},
		{"since after the last", Filter{Since: time.Now().Add(time.Hour)}, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := readAll(t, l, tc.f)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if s := fmt.Sprint(got); s != tc.want {
				t.Errorf("got  %s\nwant %s", s, tc.want)
			}
		})
	}
}

func TestReadSince(t *testing.T) {
	l, js := open(t, Options{})
	ctx := natstest.Context(t)
	if err := l.Append(ctx, record(TargetKey, "key_a", KeyCreate)); err != nil {
		t.Fatal(err)
	}
	since := stored(t, js, l.Stream())[0].Time.Add(time.Nanosecond)
	poll.Until(t, time.Second, "the clock past the first record's time", func() bool { return time.Now().After(since) })
	if err := l.Append(ctx, record(TargetKey, "key_a", KeyRevoke)); err != nil {
		t.Fatal(err)
	}
	if got, errs := readAll(t, l, Filter{Since: since}); fmt.Sprint(got) != "[key.revoke key/key_a]" || len(errs) > 0 {
		t.Errorf("since the second: %v %v", got, errs)
	}
}

// TestReadEndsAtStart: records appended while a reader reads are not
// read, and the reader ends.
func TestReadEndsAtStart(t *testing.T) {
	l, _ := open(t, Options{})
	ctx := natstest.Context(t)
	for range 3 {
		if err := l.Append(ctx, record(TargetKey, "key_a", KeyUpdate)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, err := range l.Read(ctx, Filter{Kind: TargetKey, TargetID: "key_a"}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, r := range []Record{record(TargetKey, "key_a", KeyUpdate), record(TargetAccount, "acme", BalanceAdd)} {
			if err := l.Append(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n != 3 {
		t.Errorf("read %d records, want the 3 there at the start", n)
	}
}

// TestReadBadRecords: what another client publishes on the stream's
// subjects that is not a record of its subject is reported, and reading
// goes on.
func TestReadBadRecords(t *testing.T) {
	l, js := open(t, Options{})
	ctx := natstest.Context(t)
	forged := `{"id":"aud_1","at":"2025-01-01T00:00:00Z","actor":{"kind":"cli"},"action":"key.revoke","target":{"kind":"key","id":"key_b"}}`
	for _, m := range []struct{ subject, data string }{
		{"keygate_audit.key.key_a", "not json"},
		{"keygate_audit.key.key_a", forged},
		{"keygate_audit.key.key_a", `{}`},
	} {
		if _, err := js.Publish(ctx, m.subject, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Append(ctx, record(TargetKey, "key_a", KeyRevoke)); err != nil {
		t.Fatal(err)
	}
	got, errs := readAll(t, l, Filter{TargetID: "key_a"})
	if fmt.Sprint(got) != "[key.revoke key/key_a]" || len(errs) != 3 {
		t.Fatalf("read %v, errors %v", got, errs)
	}
	for _, err := range errs {
		if !errors.Is(err, ErrBadRecord) {
			t.Errorf("error %v, want ErrBadRecord", err)
		}
	}
}

func TestReadFilterRefused(t *testing.T) {
	l, _ := open(t, Options{})
	for _, f := range []Filter{{Kind: "user"}, {TargetID: "a.b"}, {TargetID: "*"}, {Kind: TargetKey, TargetID: ">"}} {
		got, errs := readAll(t, l, f)
		if len(got) != 0 || len(errs) != 1 {
			t.Errorf("%+v: read %v, errors %v", f, got, errs)
		}
	}
}
