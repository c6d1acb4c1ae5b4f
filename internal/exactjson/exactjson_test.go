package exactjson

import (
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
		{`{"budget":{"amount":100,"AMOUNT":1000000000}}`, "AMOUNT is not a member"},
		{`{"budget":{"Amount":1,"Period":"1d"}}`, "Amount is not a member"},
		{`{"list":[{"x":1,"x":2}]}`, "x is given twice"},
		{`{"status":200,"STATUS":500}`, "STATUS is not a member"},
		{`{"a\u0041":1}`, "aA is not a member"},
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

func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"amount":100,"amount":-100}`))
	f.Add([]byte(`{"a":[{"B":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Check(b) // never panics, on any input
	})
}
