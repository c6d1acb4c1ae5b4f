package authz

import (
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

// scope returns the scope required for a request; "" means none.
func (r routes) scope(method, path string, ext map[string]string) string {
	if s, ok := ext[ScopeExtension]; ok {
		return s
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	for _, rt := range r.table {
		if (rt.Method == "" || rt.Method == "*" || rt.Method == method) && strings.HasPrefix(path, rt.PathPrefix) {
			return rt.Scope
		}
	}
	return r.defaultScope
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
