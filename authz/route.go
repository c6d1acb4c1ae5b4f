package authz

import (
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/keygate/keygate/internal/config"
)

// ScopeExtension is the context_extensions entry that sets a route's scope
// in Envoy's route configuration, overriding the routes table.
const ScopeExtension = "keygate.scope"

// routes maps method + path prefix to the scope a key needs.
type routes struct {
	table        []config.Route // longest prefix first
	defaultScope string
}

func newRoutes(table []config.Route, defaultScope string) routes {
	t := append([]config.Route(nil), table...)
	sort.SliceStable(t, func(i, j int) bool { return len(t[i].PathPrefix) > len(t[j].PathPrefix) })
	return routes{table: t, defaultScope: defaultScope}
}

// scope returns the scope required for a request; "" means none. Methods
// and path prefixes match whatever their case (in ASCII), since many
// backends route "/V1/CHAT/COMPLETIONS" or "post" like the canonical
// spelling.
func (r routes) scope(method, reqPath string, ext map[string]string) string {
	if s, ok := ext[ScopeExtension]; ok {
		return s
	}
	p := cleanPath(reqPath)
	for _, rt := range r.table {
		if (rt.Method == "" || rt.Method == "*" || equalFold(rt.Method, method)) && hasPrefixFold(p, rt.PathPrefix) {
			return rt.Scope
		}
	}
	return r.defaultScope
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix)
}

// equalFold reports whether a and b are equal ignoring ASCII case only:
// unlike strings.EqualFold, "ſ" (long s) is not "s" and "K" (Kelvin) is
// not "k", as no HTTP router takes them to be.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// cleanPath is the request path as a backend resolves it: without query,
// percent-decoded, with "//", "." and ".." resolved, so that
// "/v1//chat/%63ompletions?x" matches the route "/v1/chat/completions".
// A path that does not decode is kept as sent; it matches no route that a
// decoded one would.
func cleanPath(p string) string {
	p = trimQuery(p)
	if isClean(p) {
		return p
	}
	return resolvePath(p)
}

// resolvePath is cleanPath for a path without query.
func resolvePath(p string) string {
	if d, err := url.PathUnescape(p); err == nil {
		p = d
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return path.Clean(p) // no copy when p is clean already
}

// isClean reports whether cleanPath would return p unchanged: p starts
// with "/" and holds no "%", "//" or "/." (so no "." or ".." segments and
// no trailing "/" but the root).
func isClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		switch p[i] {
		case '%':
			return false
		case '/', '.':
			if p[i-1] == '/' {
				return false
			}
		}
	}
	return len(p) == 1 || p[len(p)-1] != '/'
}

// trimQuery drops the query and fragment from a request path.
func trimQuery(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

// hasScope reports whether scopes grant need: "*" grants everything and
// "chat:*" every scope starting with "chat:".
func hasScope(scopes []string, need string) bool {
	if need == "" {
		return true
	}
	for _, s := range scopes {
		if s == need || s == "*" || strings.HasSuffix(s, ":*") && strings.HasPrefix(need, s[:len(s)-1]) {
			return true
		}
	}
	return false
}
