// Package adminapi serves keygate's admin API: HTTP/JSON on its own
// listener for a provider's dashboard and billing, over the admin
// package's operations (the ones the command line calls), for admin
// tokens with scopes, with Idempotency-Key on creates and balance
// changes. docs/openapi.yaml describes it.
package adminapi

import (
	"errors"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/store"
)

// Options configure the API.
type Options struct {
	Admin *admin.Service
	// Idempotency is the bucket of Idempotency-Key claims and answers.
	Idempotency jetstream.KeyValue
	Log         *slog.Logger
	// Lockout slows token guessing; zero: DefaultPolicy.
	Lockout Policy
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

type api struct {
	admin   *admin.Service
	idem    jetstream.KeyValue
	log     *slog.Logger
	lockout *lockout
	now     func() time.Time
	routes  []route
}

// route is an operation: a method and path, the scope it needs, and its
// handler.
type route struct {
	method string
	path   string // "{id}" stands for one segment
	scope  string
	handle func(http.ResponseWriter, *http.Request, *call)
}

// call is a request that passed its route's checks.
type call struct {
	tok *store.Token
	id  string // the path's {id}
	by  admin.Actor
}

// New returns the API's handler.
func New(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lockout == (Policy{}) {
		o.Lockout = DefaultPolicy
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	a := &api{admin: o.Admin, idem: o.Idempotency, log: o.Log, lockout: newLockout(o.Lockout, o.Now), now: o.Now}
	read, keys, balances := admin.ScopeRead, admin.ScopeKeys, admin.ScopeBalances
	a.routes = []route{
		{"GET", "/v1/keys", read, a.listKeys},
		{"POST", "/v1/keys", keys, a.createKey},
		{"GET", "/v1/keys/{id}", read, a.getKey},
		{"PATCH", "/v1/keys/{id}", keys, a.updateKey},
		{"POST", "/v1/keys/{id}/rotate", keys, a.rotateKey},
		{"POST", "/v1/keys/{id}/revoke", keys, a.revokeKey},
		{"GET", "/v1/keys/{id}/usage", read, a.keyUsage},
		{"GET", "/v1/accounts/{id}/balance", read, a.getBalance},
		{"PUT", "/v1/accounts/{id}/balance", balances, a.setBalance},
		{"POST", "/v1/accounts/{id}/balance/credits", balances, a.addCredits},
		{"GET", "/v1/accounts/{id}/usage", read, a.accountUsage},
	}
	return a
}

// ServeHTTP finds the request's operation, authenticates its token,
// checks the token's scope, and runs it.
func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, id, e := a.route(r)
	if e == nil {
		var tok *store.Token
		if tok, e = a.authenticate(r); e == nil {
			if e = permit(tok, rt.scope); e == nil {
				rt.handle(w, r, &call{tok: tok, id: id, by: actor(tok, r)})
				return
			}
		}
	}
	writeError(w, e)
}

// route finds the request's operation and its {id}. A path is matched
// only in its plain form: without escapes, dot segments, empty segments
// or a trailing slash (no id needs any).
func (a *api) route(r *http.Request) (*route, string, *apiError) {
	p := r.URL.EscapedPath()
	notFound := errorf(http.StatusNotFound, typeInvalid, "unknown_path", "", "no admin API operation has this path; see docs/openapi.yaml")
	if strings.Contains(p, "%") || path.Clean(p) != p {
		return nil, "", notFound
	}
	var allowed []string
	for i := range a.routes {
		rt := &a.routes[i]
		id, ok := match(rt.path, p)
		if !ok {
			continue
		}
		if rt.method == r.Method {
			return rt, id, nil
		}
		allowed = append(allowed, rt.method)
	}
	if len(allowed) == 0 {
		return nil, "", notFound
	}
	slices.Sort(allowed)
	e := errorf(http.StatusMethodNotAllowed, typeInvalid, "method_not_allowed", "", "%s is not an operation of this path; it has %s",
		r.Method, strings.Join(allowed, ", "))
	return nil, "", e
}

// match matches path p against pattern, returning its {id}.
func match(pattern, p string) (string, bool) {
	ps, ss := strings.Split(pattern, "/"), strings.Split(p, "/")
	if len(ps) != len(ss) {
		return "", false
	}
	id := ""
	for i := range ps {
		switch {
		case ps[i] == "{id}" && ss[i] != "":
			id = ss[i]
		case ps[i] != ss[i]:
			return "", false
		}
	}
	return id, true
}

// changed is err of an operation that made its change: a Recorder's
// failure is logged, and the change is answered.
func (a *api) changed(err error) error {
	if errors.Is(err, admin.ErrAudit) {
		a.log.Error("a change was made through the admin API but not recorded", "err", err)
		return nil
	}
	return err
}
