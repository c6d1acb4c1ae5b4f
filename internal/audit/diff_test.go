package audit

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/store"
)

func TestDiff(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	later := t0.Add(time.Hour)
	mexico := time.FixedZone("CST", -6*3600)
	now := time.Now() // with a monotonic clock reading
	key := store.Key{ID: "key_a", Hash: "h", AccountID: "acme", Env: "live", Scopes: []string{"chat"},
		RateLimit: &store.RateLimit{Requests: 600, Window: store.Duration(time.Minute)}, Masked: "ghub_sk_live_abcd****wxyz", CreatedAt: t0}
	revoked := key
	revoked.RevokedAt = &later
	limited := key
	limited.RateLimit = &store.RateLimit{Requests: 100, Window: store.Duration(time.Minute)}
	rescoped := key
	rescoped.Scopes = []string{"chat", "models"}
	type obj = map[string]any
	for _, tc := range []struct {
		name                  string
		before, after         any
		wantBefore, wantAfter string // JSON; "null" for nil
	}{
		{"equal structs", key, key, "null", "null"},
		{"equal maps", obj{"a": 1, "b": obj{"c": []int{1}}}, obj{"b": obj{"c": []int{1}}, "a": 1}, "null", "null"},
		{"both nil", nil, nil, "null", "null"},
		{"created", nil, obj{"id": "a", "n": 1}, "null", `{"id":"a","n":1}`},
		{"removed", obj{"id": "a"}, nil, `{"id":"a"}`, "null"},
		{"field set", key, revoked, "null", `{"revoked_at":"2025-03-01T13:00:00Z"}`},
		{"field cleared", revoked, key, `{"revoked_at":"2025-03-01T13:00:00Z"}`, "null"},
		{"nested member", key, limited, `{"rate_limit":{"requests":600}}`, `{"rate_limit":{"requests":100}}`},
		{"deep nested", obj{"a": obj{"b": obj{"c": 1, "d": 2}}}, obj{"a": obj{"b": obj{"c": 1, "d": 3}}},
			`{"a":{"b":{"d":2}}}`, `{"a":{"b":{"d":3}}}`},
		{"object to scalar", obj{"a": obj{"b": 1}}, obj{"a": 2}, `{"a":{"b":1}}`, `{"a":2}`},
		{"slice whole", key, rescoped, `{"scopes":["chat"]}`, `{"scopes":["chat","models"]}`},
		{"slice order", obj{"s": []string{"a", "b"}}, obj{"s": []string{"b", "a"}}, `{"s":["a","b"]}`, `{"s":["b","a"]}`},
		{"slice of objects", obj{"s": []obj{{"a": 1}}}, obj{"s": []obj{{"a": 1}}}, "null", "null"},
		{"same instant other zone", obj{"at": t0}, obj{"at": t0.In(mexico)}, "null", "null"},
		{"monotonic reading", obj{"at": now}, obj{"at": now.Round(0).UTC()}, "null", "null"},
		{"other instant", obj{"at": t0}, obj{"at": later}, `{"at":"2025-03-01T12:00:00Z"}`, `{"at":"2025-03-01T13:00:00Z"}`},
		{"time in slice", obj{"ts": []time.Time{t0}}, obj{"ts": []time.Time{t0.In(mexico)}}, "null", "null"},
		{"big integers exact", obj{"n": int64(9007199254740993)}, obj{"n": int64(9007199254740992)},
			`{"n":9007199254740993}`, `{"n":9007199254740992}`},
		{"scalar", 1, 2, `{"value":1}`, `{"value":2}`},
		{"unencodable", func() {}, obj{"a": 1}, "null", `{"a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, a := Diff(tc.before, tc.after)
			if tc.wantBefore == "null" && tc.wantAfter == "null" && (b != nil || a != nil) {
				t.Fatalf("Diff = %v, %v; want nil, nil", b, a)
			}
			if got := mustJSON(t, b); got != tc.wantBefore {
				t.Errorf("before = %s, want %s", got, tc.wantBefore)
			}
			if got := mustJSON(t, a); got != tc.wantAfter {
				t.Errorf("after = %s, want %s", got, tc.wantAfter)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
