package exactjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		body, err string
	}{
		{`{"amount":100,"period":"1d"}`, ""},
		{`{"a":{"b":[{"c":1},{"c":2}]},"d":null}`, ""},
		{`[1,"x",{"a":1}]`, ""},
		{`{"amount":100,"amount":-100}`, "amount is given twice"},
		{`{"budget":{"amount":100,"period":"1d","amount":1}}`, "amount is given twice"},
		{`{"budget":{"amount":100,"AMOUNT":1000000000}}`, "AMOUNT is given twice"},
		{`{"budget":{"Amount":1,"Period":"1d"}}`, "Amount is not a member"},
		{`{"list":[{"x":1,"x":2}]}`, "x is given twice"},
		{`{"status":200,"STATUS":500}`, "STATUS is given twice"},
		{`{"a\u0041":1}`, "aA is not a member"},
		{`{"status":1,"STATUS":2}`, "STATUS is given twice"},
		{`{"ghub_sk_live_0123456789abcdef0123456789abcdef":1,"ghub_sk_live_0123456789abcdef0123456789abcdef":2}`, "a member is given twice"},
		{`{"ghub_sk_live_0123456789abcdefABCDEF0123456789":1}`, "a member's name is not lower case"},
	} {
		err := Check([]byte(tc.body))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, want %q", tc.body, err, tc.err)
		case err != nil && strings.Contains(err.Error(), "ghub_sk"):
			t.Errorf("%s: the error quotes a key: %v", tc.body, err)
		}
	}
}

// TestUnique: records may have map keys in any case, but never two names
// encoding/json would take for one another.
func TestUnique(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"holds":{"KG1":{"nanos":1},"kg2":{"nanos":2}}}`, true},
		{`{"revoked_at":"2020-01-01T00:00:00Z","revoked_at":null}`, false},
		{`{"balance":0,"BALANCE":100000}`, false},
		{`{"rate_limit":{"requests":1,"window":"1h","REQUESTS":1000000}}`, false},
		{`{"mask":1,"ma\u017fk":2}`, false},     // the long s folds to s
		{`{"kelvin":1,"\u212aelvin":2}`, false}, // the Kelvin sign folds to k
	} {
		if err := Unique([]byte(tc.body)); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.body, err, tc.ok)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"amount":100,"amount":-100}`))
	f.Add([]byte(`{"a":[{"B":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Check(b) // never panics, on any input
	})
}

// reference is Check and Unique written on encoding/json's tokens: slower,
// and plainly right, for FuzzAgainstReference.
func reference(b []byte, lower bool) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var value func() error
	value = func() error {
		t, err := d.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'):
			var seen []string
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return err
				}
				name := k.(string)
				for _, n := range seen {
					if strings.EqualFold(n, name) {
						return errors.New("twice")
					}
				}
				if lower && strings.ToLower(name) != name {
					return errors.New("upper")
				}
				seen = append(seen, name)
				if err := value(); err != nil {
					return err
				}
			}
		case json.Delim('['):
			for d.More() {
				if err := value(); err != nil {
					return err
				}
			}
		default:
			return nil
		}
		_, err = d.Token()
		return err
	}
	return value()
}

// FuzzAgainstReference: on valid JSON, the scanner refuses what the
// reference does.
func FuzzAgainstReference(f *testing.F) {
	f.Add([]byte(`{"a":1,"A":2}`), true)
	f.Add([]byte(`{"a":{"b":[{"c":"\u0041"}]},"\u212a":1,"k":2}`), false)
	f.Fuzz(func(t *testing.T, b []byte, lower bool) {
		if !json.Valid(b) {
			return
		}
		got, want := walk(b, lower), reference(b, lower)
		if (got == nil) != (want == nil) {
			t.Fatalf("%q: scanner %v, reference %v", b, got, want)
		}
	})
}
