package authz

import (
	"slices"
	"testing"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/reqpath"
)

var testRoutes = []config.Route{
	{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"},
	{Method: "GET", PathPrefix: "/v1/models", Scope: "models:read"},
	{Method: "GET", PathPrefix: "/v1/files", Scope: "files:read"},
	{Method: "DELETE", PathPrefix: "/v1/files", Scope: "files:write"},
	{Method: "*", PathPrefix: "/v1/admin", Scope: "admin"},
}

// TestNeed: the scopes a request needs are those of every reading of its
// path, so that no spelling reaches a route without its scope.
func TestNeed(t *testing.T) {
	r := newRoutes(testRoutes, "default")
	for _, c := range []struct {
		method, target string
		ext            string // keygate.scope, "" for none
		want           []string
	}{
		{"POST", "/v1/chat/completions", "", []string{"chat:send"}},
		{"post", "/V1/Chat/Completions?stream=true", "", []string{"chat:send"}},
		{"GET", "/v1/chat/completions", "", []string{"default"}},
		{"GET", "/v1/models/gpt-4o", "", []string{"models:read"}},
		{"HEAD", "/v1/models", "", []string{"models:read"}},
		{"head", "/v1/files/file-1", "", []string{"files:read"}},
		{"OPTIONS", "/v1/models", "", []string{"default"}},
		{"OPTIONS", "/v1/admin/x", "", []string{"admin"}},
		{"GET", "/healthz", "", []string{"default"}},
		{"GET", "/v1/models/org%2Fname", "", []string{"models:read"}},
		{"GET", "/v1/models/ft%3Agpt-4o%3Aorg", "", []string{"models:read"}},
		{"POST", `/v1/chat\completions#x`, "", []string{"default", "chat:send"}},
		{"DELETE", `/v1\files\file-1#`, "", []string{"default", "files:write"}},
		{"POST", "/v1/chat%5Ccompletions", "", []string{"default", "chat:send"}},
		{"POST", "/v1/%63hat/completions", "", []string{"default", "chat:send"}},
		{"POST", "/v1//chat/completions", "", []string{"default", "chat:send"}},
		{"POST", "/v1/models/../chat/completions", "", []string{"default", "chat:send"}},
		{"GET", "/v1/models/..%2F..%2Fv1%2Fadmin", "", []string{"models:read", "admin"}},
		{"GET", "/v1/models/%2e%2e/files", "", []string{"models:read", "files:read"}},
		{"POST", "/v1/chat/completions;x", "", []string{"chat:send"}},
		{"POST", "/v1/chat;x/completions", "", []string{"default", "chat:send"}},
		{"GET", "//v1/models", "", []string{"default", "models:read"}},
		{"GET", "http://host/v1/models", "", []string{"models:read"}},
		{"POST", "/v1/chat/completions", "images:create", []string{"images:create"}},
		{"GET", "/v1/models", "chat:send", []string{"chat:send"}},
		{"GET", "/v1/models/org%2Fname", "chat:send", []string{"chat:send"}},
		{"GET", "/v1/models/..%2Fadmin", "models:read", []string{"models:read", "admin"}},
		{"GET", "/v1/models/..%2Fgpt-4o", "chat:send", []string{"chat:send"}},
		{"GET", "/v1/models/..%2F..%2Fv1%2Fadmin", "models:read", []string{"models:read", "admin"}},
		{"GET", "/v1/models", "", []string{"models:read"}},
	} {
		n, err := r.need(c.method, c.target, c.ext, c.ext != "")
		if err != nil {
			t.Errorf("%s %s: %v", c.method, c.target, err)
			continue
		}
		got := n.all()
		if !slices.Equal(sorted(got), sorted(c.want)) {
			t.Errorf("%s %s (ext %q) needs %q, want %q", c.method, c.target, c.ext, got, c.want)
		}
	}
}

func (n needs) all() []string {
	if n.first == "" {
		return nil
	}
	return append([]string{n.first}, n.more...)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestNeedRefuses(t *testing.T) {
	r := newRoutes(testRoutes, "")
	for _, target := range []string{"/v1/models%00", "/v1/%zz", "/v1/mod\x01els", "/v1/é", "models", "/v1/%c0%ae%c0%ae/"} {
		if n, err := r.need("GET", target, "", false); !reqpath.IsInvalid(err) {
			t.Errorf("GET %q needs %q, want it refused", target, n.all())
		}
	}
}

func TestNeedsMissing(t *testing.T) {
	var n needs
	for _, s := range []string{"", "a:x", "b:y", "a:x", ""} {
		n.add(s)
	}
	for _, c := range []struct {
		scopes  []string
		missing string
	}{
		{[]string{"a:x", "b:y"}, ""},
		{[]string{"*"}, ""},
		{[]string{"a:*", "b:*"}, ""},
		{[]string{"a:x"}, "b:y"},
		{[]string{"b:y"}, "a:x"},
		{nil, "a:x"},
	} {
		got, ok := n.missing(c.scopes)
		if got != c.missing || ok != (c.missing != "") {
			t.Errorf("missing(%q) = %q, %v; want %q", c.scopes, got, ok, c.missing)
		}
	}
	if _, ok := (needs{}).missing(nil); ok {
		t.Error("a request that needs no scope was denied to a key without any")
	}
}
