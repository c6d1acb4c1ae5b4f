package reqpath

import (
	"slices"
	"strings"
	"testing"
)

func TestSimple(t *testing.T) {
	for target, want := range map[string]string{
		"/":                              "/",
		"/v1/chat/completions":           "/v1/chat/completions",
		"/v1/chat/completions?stream=1#": "/v1/chat/completions",
		"/v1/models/ft:gpt-4o:org:x@y":   "/v1/models/ft:gpt-4o:org:x@y",
		"/a.b/c..d/.well-known/...":      "/a.b/c..d/.well-known/...",
	} {
		if got, ok := Simple(target); !ok || got != want {
			t.Errorf("Simple(%q) = %q, %v; want %q", target, got, ok, want)
		}
	}
	for _, target := range []string{"", "v1", "*", "//v1", "/v1//x", "/v1/./x", "/v1/../x", "/v1/.", "/v1/..", "/.", "/v1/%63",
		`/v1\x`, "/v1;x", "/v1#x", "/v1/é", "/v1/ x", "/v1/\x00", "http://h/v1"} {
		if got, ok := Simple(target); ok {
			t.Errorf("Simple(%q) = %q, true; want false", target, got)
		}
	}
}

func TestReadings(t *testing.T) {
	for _, c := range []struct {
		target string
		want   []string // in any order
	}{
		{"/v1/models", []string{"/v1/models"}},
		{"/v1/models?x=%zz", []string{"/v1/models"}},
		{"*", []string{"*"}},
		{"http://example.com/v1/models?x", []string{"/v1/models"}},
		{"HTTPS://example.com", []string{"/"}},
		{"/v1/%63hat/completions", []string{"/v1/%63hat/completions", "/v1/chat/completions"}},
		{"/v1/models/org%2Fname", []string{"/v1/models/org%2Fname", "/v1/models/org/name"}},
		{"/v1/models/org%252Fname", []string{"/v1/models/org%252Fname", "/v1/models/org%2Fname", "/v1/models/org/name"}},
		{"/v1//chat/completions", []string{"/v1//chat/completions", "/v1/chat/completions"}},
		{"/v1/models/../chat/completions", []string{"/v1/models/../chat/completions", "/v1/chat/completions"}},
		{"/v1/x/%2e%2e/chat", []string{"/v1/x/%2e%2e/chat", "/v1/x/../chat", "/v1/chat"}},
		{"/v1/.", []string{"/v1/.", "/v1/"}},
		{"/..", []string{"/..", "/"}},
		{`/v1/chat\completions#x`, []string{`/v1/chat\completions#x`, `/v1/chat\completions`, "/v1/chat/completions#x", "/v1/chat/completions"}},
		{"/v1/chat/completions;x=1", []string{"/v1/chat/completions;x=1", "/v1/chat/completions"}},
		{"/v1/files/..;/chat", []string{"/v1/files/..;/chat", "/v1/files/../chat", "/v1/chat"}},
		{"//evil/v1/models", []string{"//evil/v1/models", "/v1/models", "/evil/v1/models"}},
		{`/\evil/v1/models`, []string{`/\evil/v1/models`, "/v1/models", "//evil/v1/models", "/evil/v1/models"}},
		{"/v1/chat%5Ccompletions", []string{"/v1/chat%5Ccompletions", `/v1/chat\completions`, "/v1/chat/completions"}},
	} {
		got, err := Readings(c.target)
		if err != nil {
			t.Errorf("Readings(%q): %v", c.target, err)
			continue
		}
		if !sameSet(got, c.want) {
			t.Errorf("Readings(%q) = %q, want %q", c.target, got, c.want)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestReadingsRefused(t *testing.T) {
	for _, target := range []string{
		"", "v1/models", "models",
		"/v1/models\x00", "/v1/mod\tels", "/v1/models ", "/v1/\x7f",
		"/v1/%00/models", "/v1/%0a", "/v1/%2500", "/v1/%7f",
		"/v1/%zz", "/v1/%4", "/v1/%", "/v1/%g1",
		"/v1/é", "/v1/\xff",
		"/v1/%ff", "/v1/%c0%af", "/v1/%25ff",
		"/v1/chat/completion%C5%BF", "/v1/models/%E2%84%AA",
		"/v1/%2e%2e/" + strings.Repeat("a", MaxAmbiguous),
	} {
		if got, err := Readings(target); !IsInvalid(err) {
			t.Errorf("Readings(%q) = %q, %v; want a refusal", target, got, err)
		}
	}
	if _, err := Readings("/v1/%2e%2e/" + strings.Repeat("a", MaxAmbiguous-20)); err != nil {
		t.Errorf("a path just under MaxAmbiguous: %v", err)
	}
	// A path crafted to multiply its readings is refused, not worked out.
	crafted := "//h" + strings.Repeat(`a%252F\b;c//d/./e/../`, 40) + "x#/y"
	if _, err := Readings(crafted); !IsInvalid(err) {
		t.Errorf("a path of %d bytes crafted for readings: %v", len(crafted), err)
	}
}

func FuzzReadings(f *testing.F) {
	for _, p := range []string{"/", "/v1/models", "/v1//models", "/v1/./models", "/v1/../admin", "/v1/%63hat", "/v1/", "v1", "",
		"/.", "/a.b/c..d", `/v1/chat\completions#x`, "//h/x", "/a;b/..;c/%2e%2E/%252e", "http://h/a", "*"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, target string) {
		rs, err := Readings(target)
		if s, ok := Simple(target); ok && (err != nil || len(rs) != 1 || rs[0] != s) {
			t.Fatalf("Simple(%q) = %q, but Readings = %q, %v", target, s, rs, err)
		}
		if err != nil {
			if !IsInvalid(err) {
				t.Fatalf("Readings(%q): %v is not a refusal", target, err)
			}
			return
		}
		if len(rs) == 0 || len(rs) > 256 {
			t.Fatalf("Readings(%q): %d readings", target, len(rs))
		}
		for _, r := range rs {
			if r != "*" && !strings.HasPrefix(r, "/") {
				t.Fatalf("Readings(%q): reading %q does not start with /", target, r)
			}
		}
	})
}

func BenchmarkSimple(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Simple("/v1/chat/completions?stream=true")
	}
}

func BenchmarkReadings(b *testing.B) {
	for _, c := range []struct{ name, target string }{
		{"spelled", `/v1/files/..%2F..%2Fv1/chat\completions;x#y`},
		{"crafted", "//h" + strings.Repeat(`a%252F\b;c//d/./e/../`, 40) + "x#/y"},
		{"crafted-short", "//h" + strings.Repeat(`a%252F\b;c//d/./e/../`, 4) + "x#/y"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Readings(c.target)
			}
		})
	}
}

// FuzzRemoveDots checks removeDots against RFC 3986's algorithm written
// the plain way.
func FuzzRemoveDots(f *testing.F) {
	for _, p := range []string{"/", "/a/./b/../c", "/..", "/a/.", "/a/..", "//..//.", "/a/b/c/../../..", "/.../..a/a.."} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !strings.HasPrefix(p, "/") {
			return
		}
		got, ok := removeDots(p)
		want, wok := removeDotsPlain(p)
		if ok != wok || ok && got != want {
			t.Fatalf("removeDots(%q) = %q, %v; want %q, %v", p, got, ok, want, wok)
		}
	})
}

func removeDotsPlain(p string) (string, bool) {
	segs := strings.Split(p, "/")[1:]
	if !slices.Contains(segs, ".") && !slices.Contains(segs, "..") {
		return "", false
	}
	var out []string
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/"), true
}
