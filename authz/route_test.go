package authz

import "testing"

// FuzzIsClean checks the fast path of cleanPath: a path it calls clean is
// one that resolving would leave as it is.
func FuzzIsClean(f *testing.F) {
	for _, p := range []string{"/", "/v1/models", "/v1//models", "/v1/./models", "/v1/../admin", "/v1/%63hat", "/v1/", "v1", "", "/.", "/a.b/c..d", "/v1/.well-known"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if isClean(p) && resolvePath(p) != p {
			t.Errorf("isClean(%q), but it resolves to %q", p, resolvePath(p))
		}
	})
}

func TestIsClean(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/v1/chat/completions": true, "/a.b/c..d": true,
		"": false, "v1": false, "/v1/": false, "//v1": false, "/v1/./x": false, "/v1/../x": false, "/v1/%2e": false, "/.": false,
	} {
		if got := isClean(p); got != want {
			t.Errorf("isClean(%q) = %v, want %v", p, got, want)
		}
	}
}
