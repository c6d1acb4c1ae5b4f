package store_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/store"
)

// A record with members this keygate does not know is read, reports
// them, and keeps them when rewritten: a restriction added by a newer
// keygate is never dropped by an older one revoking the key.
func TestUnknownMembersKept(t *testing.T) {
	ctx, sts := openStores(t, 1)
	st := sts[0]
	k := newKey(t)
	if err := st.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(k)
	b = append(b[:len(b)-1], []byte(`,"allow_ips":["10.0.0.0/8"],"z_future":{"a":1}}`)...)
	if _, err := st.Keys().Put(ctx, store.HashEntry(k.Hash), b); err != nil {
		t.Fatal(err)
	}
	got, _, err := st.KeyByID(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u := got.Unsupported(); !slices.Equal(u, []string{"allow_ips", "z_future"}) {
		t.Fatalf("Unsupported() = %v", u)
	}
	if _, err := st.UpdateKey(ctx, k.ID, func(k *store.Key) error { k.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	e, err := st.Keys().Get(ctx, store.HashEntry(k.Hash))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"allow_ips":["10.0.0.0/8"]`, `"z_future":{"a":1}`, `"name":"renamed"`} {
		if !strings.Contains(string(e.Value()), want) {
			t.Errorf("rewritten record %s lacks %s", e.Value(), want)
		}
	}
}

func TestKeyFormat(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		unsupported []string
		invalid     bool
	}{
		{name: "format 1", extra: ``},
		{name: "format 2 with restrictions", extra: `,"v":2,"models":["gpt-4o*"],"token_limit":{"tokens":1000,"window":"1m0s"},"budget":{"amount":5000,"period":"1mo"}`},
		{name: "newer format", extra: `,"v":3`, unsupported: []string{"v=3"}},
		{name: "unknown member", extra: `,"allow_ips":[]`, unsupported: []string{"allow_ips"}},
		{name: "bad model", extra: `,"models":["a b"]`, invalid: true},
		{name: "bad token limit", extra: `,"token_limit":{"tokens":0,"window":"1m0s"}`, invalid: true},
		{name: "bad budget period", extra: `,"budget":{"amount":1,"period":"1y"}`, invalid: true},
		{name: "bad budget amount", extra: `,"budget":{"amount":-1,"period":"1d"}`, invalid: true},
		{name: "negative format", extra: `,"v":-1`, invalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(newKey(t))
			b = append(b[:len(b)-1], []byte(tc.extra+`}`)...)
			k, err := store.DecodeKey(b)
			if tc.invalid {
				if err == nil {
					t.Fatal("read an invalid record")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u := k.Unsupported(); !slices.Equal(u, tc.unsupported) {
				t.Fatalf("Unsupported() = %v, want %v", u, tc.unsupported)
			}
		})
	}
}

func TestPeriods(t *testing.T) {
	for _, tc := range []struct {
		p       store.Period
		ok, cal bool
	}{{"1d", true, true}, {"1w", true, true}, {"1mo", true, true}, {"12h", true, false}, {"1y", false, false}, {"0s", false, false}, {"", false, false}} {
		_, err := tc.p.Duration()
		if (err == nil) != tc.ok || tc.p.Calendar() != tc.cal {
			t.Errorf("%q: err %v, calendar %v", tc.p, err, tc.p.Calendar())
		}
	}
}
