// Package authz decides whether a request may pass: it implements Envoy's
// ext_authz v3 Check, reading the API key from the request, looking it up
// in the cache and answering allow with identity headers or deny with an
// OpenAI-compatible error body.
package authz

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// Options configure a Server.
type Options struct {
	Format       apikey.Format
	Credentials  []config.Credential
	Routes       []config.Route
	DefaultScope string
	DefaultLimit *ratelimit.Limit // nil: unlimited
	LowBalance   string           // default threshold in major units
	Now          func() time.Time // time.Now if nil
	// Stale, if set, reports that cached records are too old to trust at
	// the given time (the store has been unreachable for too long).
	Stale   func(time.Time) bool
	Metrics *Metrics     // optional
	Log     *slog.Logger // optional
}

// Server answers ext_authz checks.
type Server struct {
	format     apikey.Format
	extract    extractor
	routes     routes
	limit      *ratelimit.Limit
	lowBalance string
	remove     []string
	keys       *cache.Table[*Key]
	accounts   *cache.Table[*Account]
	limiter    *ratelimit.Limiter
	now        func() time.Time
	stale      func(time.Time) bool
	metrics    *Metrics
	log        *slog.Logger
	static     map[string]*authv3.CheckResponse
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server deciding with the given caches.
func New(o Options, keys *cache.Table[*Key], accounts *cache.Table[*Account]) *Server {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stale := o.Stale
	if stale == nil {
		stale = func(time.Time) bool { return false }
	}
	s := &Server{stale: stale,
		format: o.Format, extract: extractor{sources: o.Credentials},
		routes: newRoutes(o.Routes, o.DefaultScope), limit: o.DefaultLimit, lowBalance: o.LowBalance,
		keys: keys, accounts: accounts, limiter: ratelimit.New(now), now: now, metrics: o.Metrics, log: log,
	}
	for _, c := range o.Credentials {
		s.remove = append(s.remove, c.Header)
	}
	s.static = staticDenials()
	return s
}

// Limiter is the per-key rate limiter, to sweep from time to time.
func (s *Server) Limiter() *ratelimit.Limiter { return s.limiter }

// Check implements Envoy's ext_authz Check. It never returns an error:
// every failure is a deny the client can read.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	resp, code := s.decide(ctx, req)
	s.metrics.observe(code, time.Since(start))
	return resp, nil
}

func (s *Server) decide(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, string) {
	http := req.GetAttributes().GetRequest().GetHttp()
	raw, st := s.extract.extract(http)
	if st != credOK {
		return s.denyCredential(st)
	}
	if s.format.Check(raw) != nil {
		return s.static[msgMalformed], CodeInvalidKey
	}
	now := s.now()
	if s.stale(now) {
		return s.static[msgUnavailable], CodeUnavailable
	}
	e, err := s.keys.Get(ctx, apikey.Hash(raw))
	if err != nil {
		s.log.Debug("key store unavailable", "err", err)
		return s.static[msgUnavailable], CodeUnavailable
	}
	k := e.Value
	switch {
	case !e.Found:
		return s.static[msgUnknown], CodeInvalidKey
	case k.Revoked:
		return s.static[msgRevoked], CodeInvalidKey
	case k.expired(now):
		return denyExpired.response(fmt.Sprintf("This API key expired at %s; create a new key to continue.", k.ExpiresAt.UTC().Format(time.RFC3339))), CodeExpiredKey
	}
	if need := s.routes.scope(http.GetMethod(), http.GetPath(), req.GetAttributes().GetContextExtensions()); !hasScope(k.Scopes, need) {
		return denyScope.response(fmt.Sprintf("This API key lacks the %q scope that %s %s requires.", need, http.GetMethod(), trimQuery(http.GetPath())),
			header("www-authenticate", `Bearer realm="keygate", error="insufficient_scope", scope="`+need+`"`)), CodeInsufficientScope
	}
	var acct *Account
	if k.Env != store.EnvTest {
		if acct, err = s.account(ctx, k.AccountID); err != nil {
			s.log.Debug("key store unavailable", "err", err)
			return s.static[msgUnavailable], CodeUnavailable
		}
		if acct.Balance <= 0 {
			return denyBalance.response(fmt.Sprintf("Your balance is %s %s; top up to continue.", money.Format(acct.Balance, acct.Currency), acct.Currency)), CodeNoBalance
		}
	}
	var rl []*corev3.HeaderValueOption
	if limit := s.limitOf(k); limit != nil {
		r := s.limiter.Allow(k.ID, *limit)
		rl = rateHeaders(r)
		if !r.Allowed {
			return denyRateLimit.response(fmt.Sprintf("Rate limit reached for key %s: %d requests per %s. Retry in %ss.", k.ID, r.Limit, limit.Window, seconds(int64(r.Reset))),
				append(rl, header("retry-after", seconds(int64(r.Reset))))...), CodeRateLimited
		}
	}
	return s.allow(k, acct, rl), CodeOK
}

// account returns the key's account; a missing one has a zero balance.
func (s *Server) account(ctx context.Context, id string) (*Account, error) {
	e, err := s.accounts.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !e.Found {
		return &Account{ID: id, Currency: money.DefaultCurrency}, nil
	}
	return e.Value, nil
}

func (s *Server) limitOf(k *Key) *ratelimit.Limit {
	if k.Limit != nil {
		return k.Limit
	}
	return s.limit
}

func (s *Server) allow(k *Key, acct *Account, rl []*corev3.HeaderValueOption) *authv3.CheckResponse {
	if acct != nil && acct.Balance < s.threshold(acct) {
		rl = append(rl, header("x-balance-low", "true"),
			header("x-balance-remaining", money.Format(acct.Balance, acct.Currency)+" "+acct.Currency))
	}
	return &authv3.CheckResponse{
		Status: &status.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              k.upstream,
			HeadersToRemove:      s.remove,
			ResponseHeadersToAdd: rl,
		}},
		DynamicMetadata: k.metadata,
	}
}

// threshold is the account's low-balance threshold in its minor units.
func (s *Server) threshold(a *Account) int64 {
	if a.LowBalanceThreshold != nil {
		return *a.LowBalanceThreshold
	}
	v, _ := money.Parse(s.lowBalance, a.Currency)
	return v
}

func rateHeaders(r ratelimit.Result) []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{
		header("x-ratelimit-limit", strconv.FormatInt(r.Limit, 10)),
		header("x-ratelimit-remaining", strconv.FormatInt(r.Remaining, 10)),
		header("x-ratelimit-reset", seconds(int64(r.Reset))),
	}
}

// trimQuery shortens a request path for a message.
func trimQuery(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if len(path) > 200 {
		path = path[:200] + "..."
	}
	return path
}
