package store_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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
	b = append(b[:len(b)-1], []byte(`,"allow_referrers":["example.com"],"z_future":{"a":1}}`)...)
	if _, err := st.Keys().Put(ctx, store.HashEntry(k.Hash), b); err != nil {
		t.Fatal(err)
	}
	got, _, err := st.KeyByID(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u := got.Unsupported(); !slices.Equal(u, []string{"allow_referrers", "z_future"}) {
		t.Fatalf("Unsupported() = %v", u)
	}
	if _, err := st.UpdateKey(ctx, k.ID, func(k *store.Key) error { k.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	e, err := st.Keys().Get(ctx, store.HashEntry(k.Hash))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"allow_referrers":["example.com"]`, `"z_future":{"a":1}`, `"name":"renamed"`} {
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
		{name: "unknown member", extra: `,"allow_referrers":[]`, unsupported: []string{"allow_referrers"}},
		{name: "format 2 with allow_ips", extra: `,"v":2,"allow_ips":["10.0.0.0/8","2001:db8::/32","203.0.113.7/32"]`},
		{name: "allow_ips with a bare address", extra: `,"v":2,"allow_ips":["203.0.113.7","2001:db8::1"]`},
		{name: "allow_ips null", extra: `,"allow_ips":null`},
		{name: "allow_ips empty", extra: `,"allow_ips":[]`, invalid: true},
		{name: "allow_ips not an address", extra: `,"allow_ips":["10.0.0.0/33"]`, invalid: true},
		{name: "allow_ips with host bits", extra: `,"allow_ips":["10.1.2.3/8"]`, invalid: true},
		{name: "allow_ips IPv4-mapped", extra: `,"allow_ips":["::ffff:10.0.0.0/104"]`, invalid: true},
		{name: "allow_ips with a zone", extra: `,"allow_ips":["fe80::1%eth0"]`, invalid: true},
		{name: "allow_ips with spaces", extra: `,"allow_ips":[" 10.0.0.0/8"]`, invalid: true},
		{name: "allow_ips too long", extra: `,"allow_ips":[` + strings.Repeat(`"10.0.0.0/8",`, store.MaxAllowIPs) + `"10.0.0.0/8"]`, invalid: true},
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

// A key with allow_ips is a record of format 2: a keygate of format 1
// would ignore the list.
func TestAllowIPsRestricted(t *testing.T) {
	if k := (store.Key{AllowIPs: []string{"10.0.0.0/8"}}); !k.Restricted() {
		t.Fatal("a key with allow_ips is not Restricted()")
	}
}

func TestParseAllowIPs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		problem string // in the error
	}{
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/8,2001:db8::/32", want: []string{"10.0.0.0/8", "2001:db8::/32"}},
		{in: " 203.0.113.7 , 2001:DB8::1 ,", want: []string{"203.0.113.7/32", "2001:db8::1/128"}},
		{in: "2001:0db8:0000::/48", want: []string{"2001:db8::/48"}},
		{in: "0.0.0.0/0,::/0", want: []string{"0.0.0.0/0", "::/0"}},
		{in: "10.0.0.1,10.0.0.1/32,10.0.0.1", want: []string{"10.0.0.1/32"}},
		{in: "", problem: "give 1 to 64"},
		{in: " , ", problem: "give 1 to 64"},
		{in: "none", problem: `"none" is not an IP address or prefix`},
		{in: "10.0.0.0/8;10.1.0.0/16", problem: "is not an IP address"},
		{in: "10.0.0.0/33", problem: "is not an IP address"},
		{in: "10.0.0/8", problem: "is not an IP address"},
		{in: "010.0.0.0/8", problem: "is not an IP address"},
		{in: "example.com", problem: "is not an IP address"},
		{in: "10.1.2.3/8", problem: "write 10.0.0.0/8 for the network or 10.1.2.3/32 for one address"},
		{in: "2001:db8::1/32", problem: "write 2001:db8::/32 for the network or 2001:db8::1/128"},
		{in: "::ffff:10.0.0.0/104", problem: "IPv4-mapped IPv6 prefix; write it as IPv4 (10.0.0.0/8)"},
		{in: "::ffff:10.1.2.3", problem: "IPv4-mapped IPv6 address; write it as IPv4 (10.1.2.3/32)"},
		{in: "fe80::1%eth0", problem: "is not an IP address"},
		{in: "fe80::%eth0/64", problem: "is not an IP address"},
		{in: strings.Repeat("10.0.0.0/8,", 1) + manyHosts(store.MaxAllowIPs), problem: "give 1 to 64"},
	} {
		got, err := store.ParseAllowIPs(tc.in)
		switch {
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("ParseAllowIPs(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.problem)
		case tc.problem == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("ParseAllowIPs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if got, err := store.ParseAllowIPs(manyHosts(store.MaxAllowIPs)); err != nil || len(got) != store.MaxAllowIPs {
		t.Errorf("%d hosts: %d, %v", store.MaxAllowIPs, len(got), err)
	}
}

// manyHosts lists n different addresses.
func manyHosts(n int) string {
	var hs []string
	for i := range n {
		hs = append(hs, fmt.Sprintf("192.0.2.%d", i))
	}
	return strings.Join(hs, ",")
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

func TestParseBudget(t *testing.T) {
	for _, tc := range []struct {
		s, currency string
		amount      int64
		period      store.Period
		err         string
	}{
		{s: "50.00/1mo", currency: "MXN", amount: 5000, period: "1mo"},
		{s: "50/1w", currency: "USD", amount: 5000, period: "1w"},
		{s: "500/12h", currency: "JPY", amount: 500, period: "12h"},
		{s: "0.01/1d", currency: "MXN", amount: 1, period: "1d"},
		{s: "10000000.00/1d", currency: "MXN", amount: 1e9, period: "1d"},
		{s: "10000000.01/1d", currency: "MXN", err: "must be from 0.01 to 10000000.00 MXN"},
		{s: "0/1d", currency: "MXN", err: "must be from"},
		{s: "-5/1d", currency: "MXN", err: "must be from"},
		{s: "1.5/1d", currency: "JPY", err: "decimal places for JPY"},
		{s: "50", currency: "MXN", err: "is not AMOUNT/PERIOD"},
		{s: "50/1y", currency: "MXN", err: `period "1y"`},
		{s: "5x/1d", currency: "MXN", err: "AMOUNT"},
	} {
		b, err := store.ParseBudget(tc.s, tc.currency)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %s: err %v, want %q", tc.s, tc.currency, err, tc.err)
			}
			continue
		}
		if err != nil || b.Amount != tc.amount || b.Period != tc.period {
			t.Errorf("%s %s: %+v, %v", tc.s, tc.currency, b, err)
		}
	}
}

func TestSetVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		k    store.Key
		want int
	}{
		{"none", store.Key{V: 2}, 0},
		{"models", store.Key{Models: []string{"a"}}, 2},
		{"token limit", store.Key{V: 1, TokenLimit: &store.TokenLimit{Tokens: 1, Window: store.Duration(time.Minute)}}, 2},
		{"budget", store.Key{Budget: &store.Budget{Amount: 1, Period: store.Day}}, 2},
		{"newer format kept", store.Key{V: 3}, 3},
	} {
		tc.k.SetVersion()
		if tc.k.V != tc.want {
			t.Errorf("%s: v %d, want %d", tc.name, tc.k.V, tc.want)
		}
	}
}
