package authz

import (
	"slices"
	"sort"
	"strings"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/reqpath"
)

// ScopeExtension is the context_extensions entry that sets a route's scope
// in Envoy's route configuration, overriding the routes table.
const ScopeExtension = "keygate.scope"

// routes maps method + path prefix to the scope a key needs.
type routes struct {
	table        []config.Route // longest prefix first
	index        []int          // of each in the configuration
	defaultScope string
}

func newRoutes(table []config.Route, defaultScope string) routes {
	index := make([]int, len(table))
	for i := range index {
		index[i] = i
	}
	sort.SliceStable(index, func(i, j int) bool { return len(table[index[i]].PathPrefix) > len(table[index[j]].PathPrefix) })
	t := make([]config.Route, len(table))
	for i, j := range index {
		t[i] = table[j]
	}
	return routes{table: t, index: index, defaultScope: defaultScope}
}

// configured returns, for a path with one reading, that reading and the
// index in the configuration of the route it reaches (-1 for none).
func (r routes) configured(method, target string) (string, int, bool) {
	if method == "HEAD" || equalFold(method, "HEAD") {
		method = "GET"
	}
	p, ok := reqpath.Simple(target)
	if !ok {
		return "", -1, false
	}
	if i := r.match(method, p); i >= 0 {
		return p, r.index[i], true
	}
	return p, -1, true
}

// need returns the scopes a request needs (none, one, or one for each
// route a reading of its path leads to), or a *reqpath.Error when the
// path is refused; s is the keygate.scope context extension, if override.
// HEAD needs what GET needs. Without a context extension, every reading of the path (reqpath.Readings) needs its
// route's scope, or the default scope where no route matches; with one,
// Envoy has routed the path as sent, and other readings add the scope of
// any other route they lead to. Methods and path prefixes match whatever
// their case (in ASCII), since many backends route "/V1/CHAT/COMPLETIONS"
// or "post" like the canonical spelling.
func (r routes) need(method, target, s string, override bool) (needs, error) {
	if method == "HEAD" || equalFold(method, "HEAD") {
		method = "GET"
	}
	if p, ok := reqpath.Simple(target); ok { // the common case: one reading, no allocation
		if override {
			return needs{first: s}, nil
		}
		return needs{first: r.scopeOf(r.match(method, p))}, nil
	}
	readings, err := reqpath.Readings(target)
	if err != nil {
		return needs{}, err
	}
	var n needs
	sent := r.match(method, readings[0])
	if override {
		n.add(s)
	}
	for _, p := range readings {
		i := r.match(method, p)
		if !override || i >= 0 && i != sent {
			n.add(r.scopeOf(i))
		}
	}
	return n, nil
}

// match returns the index of the route for method and path p (one
// reading), or -1 when no route matches.
func (r routes) match(method, p string) int {
	for i, rt := range r.table {
		if (rt.Method == "" || rt.Method == "*" || equalFold(rt.Method, method)) && hasPrefixFold(p, rt.PathPrefix) {
			return i
		}
	}
	return -1
}

// scopeOf is the scope of route i, or the default scope for -1.
func (r routes) scopeOf(i int) string {
	if i < 0 {
		return r.defaultScope
	}
	return r.table[i].Scope
}

// needs is the set of scopes a request needs; "" needs none.
type needs struct {
	first string
	more  []string
}

func (n *needs) add(s string) {
	if s == "" || s == n.first || slices.Contains(n.more, s) {
		return
	}
	if n.first == "" {
		n.first = s
		return
	}
	n.more = append(n.more, s)
}

// missing returns the first scope of n that scopes do not grant.
func (n needs) missing(scopes []string) (string, bool) {
	if !hasScope(scopes, n.first) {
		return n.first, true
	}
	for _, s := range n.more {
		if !hasScope(scopes, s) {
			return s, true
		}
	}
	return "", false
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFold(s[:len(prefix)], prefix)
}

// equalFold reports whether a and b are equal ignoring ASCII case only:
// unlike strings.EqualFold, "ſ" (long s) is not "s" and "K" (Kelvin) is
// not "k" (reqpath refuses paths that hold them).
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
