// Package authz decides whether a request may pass: it implements Envoy's
// ext_authz v3 Check, reading the API key from the request, looking it up
// in the cache and answering allow with identity headers or deny with an
// OpenAI-compatible error body.
package authz

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/reqpath"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/usage"
)

// Options configure a Server.
type Options struct {
	Format       apikey.Format
	Credentials  []config.Credential
	Routes       []config.Route
	DefaultScope string
	DefaultLimit *ratelimit.Limit // nil: unlimited
	// Limiter enforces rate limits; nil: one of this process alone.
	Limiter *ratelimit.Limiter
	// Usage, if set, counts each known key's checks by outcome.
	Usage      *usage.Recorder
	LowBalance string           // default threshold in major units
	Now        func() time.Time // time.Now if nil
	// Stale, if set, reports that cached records are too old to trust at
	// the given time (the store has been unreachable for too long).
	Stale   func(time.Time) bool
	Metrics *Metrics     // optional
	Log     *slog.Logger // optional
	// Metering, all optional: prices (nil: no prices), the funds that
	// hold balances, the settler that keeps reservations, and this
	// keygate's id in both.
	Prices  *pricing.Table
	Funds   *funds.Funds
	Settler *settle.Settler
	ID      string
	// XFFTrustedHops is config's client_ip.xff_trusted_hops: where the
	// client's address is read for keys with allow_ips (clientip.Of).
	XFFTrustedHops int
}

// Server answers ext_authz checks.
type Server struct {
	format      apikey.Format
	extract     extractor
	routes      routes
	limit       *ratelimit.Limit
	lowBalance2 int64 // default threshold in minor units, 2 decimals
	lowBalance0 int64 // the same for currencies without decimals
	headers     headerCache
	remove      []string // the credential headers
	removeAll   []string // and the reservation id header
	keys        *cache.Table[*Key]
	accounts    *cache.Table[*Account]
	limiter     *ratelimit.Limiter
	usage       *usage.Recorder
	now         func() time.Time
	stale       func(time.Time) bool
	metrics     *Metrics
	log         *slog.Logger
	static      map[string]*authv3.CheckResponse
	prices      *pricing.Table
	funds       *funds.Funds
	settler     *settle.Settler
	id          string
	holdTTL     time.Duration
	hops        int // trusted X-Forwarded-For hops
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
		routes: newRoutes(o.Routes, o.DefaultScope), limit: o.DefaultLimit,
		keys: keys, accounts: accounts, limiter: o.Limiter, usage: o.Usage, now: now, metrics: o.Metrics, log: log,
		prices: o.Prices, funds: o.Funds, settler: o.Settler, id: o.ID, holdTTL: o.Prices.HoldTTL(), hops: o.XFFTrustedHops,
	}
	if s.holdTTL == 0 {
		s.holdTTL = time.Hour
	}
	if s.limiter == nil {
		s.limiter = ratelimit.New(ratelimit.Options{Now: now})
	}
	for _, c := range o.Credentials {
		s.remove = append(s.remove, c.Header)
	}
	// An allow that reserves nothing removes any reservation id the
	// client sent; one that reserves overwrites it.
	s.removeAll = append(slices.Clone(s.remove), ReservationHeader)
	s.lowBalance2, _ = money.Parse(o.LowBalance, money.DefaultCurrency) // validated by config
	s.lowBalance0 = s.lowBalance2 / 100
	s.static = staticDenials()
	return s
}

// Limiter is the per-key rate limiter, to sweep from time to time.
func (s *Server) Limiter() *ratelimit.Limiter { return s.limiter }

// Check implements Envoy's ext_authz Check. It never returns an error:
// every failure is a deny the client can read.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	r := GetRequest()
	defer PutRequest(r) // as the gRPC service does: no answer refers to it
	s.extract.fill(r, req)
	return s.Decide(ctx, r), nil
}

// Decide answers r, as Check does.
func (s *Server) Decide(ctx context.Context, r *Request) *authv3.CheckResponse {
	now := s.now()
	resp, code, k := s.decide(ctx, r, now)
	if k != nil && s.usage != nil {
		s.usage.Count(&k.use, k.ID, code)
	}
	if s.metrics != nil {
		s.metrics.observe(code, s.now().Sub(now))
	}
	return resp
}

// decide answers r, with the error code for metrics ("ok" on allow) and
// the key's cached record if the key is known.
func (s *Server) decide(ctx context.Context, r *Request, now time.Time) (*authv3.CheckResponse, string, *Key) {
	raw, st := s.extract.key(r)
	if st != credOK {
		resp, code := s.denyCredential(st)
		return resp, code, nil
	}
	if s.format.Check(raw) != nil {
		return s.static[msgMalformed], CodeInvalidKey, nil
	}
	if s.stale(now) {
		return s.static[msgUnavailable], CodeUnavailable, nil
	}
	// The hash is written into the pooled request: a cache hit allocates
	// nothing.
	e, err := s.keys.Get(ctx, r.hash.Hash(raw))
	if err != nil {
		s.log.Debug("key store unavailable", "err", err)
		return s.static[msgUnavailable], CodeUnavailable, nil
	}
	if !e.Found {
		return s.static[msgUnknown], CodeInvalidKey, nil
	}
	resp, code := s.decideKey(ctx, e.Value, r, now)
	return resp, code, e.Value
}

// decideKey answers a request made with the known key k: the first row
// of the decision table that applies, the key's IP allowlist after the
// scope, metering's refusals after that, and what the request holds
// released when a later row denies it.
func (s *Server) decideKey(ctx context.Context, k *Key, r *Request, now time.Time) (*authv3.CheckResponse, string) {
	switch {
	case k.revoked:
		return s.static[msgRevoked], CodeInvalidKey
	case k.expired(now):
		return denyExpired.response(fmt.Sprintf("This API key expired at %s; create a new key to continue.", k.expiry().Format(time.RFC3339))), CodeExpiredKey
	case k.unsupported != "":
		return denyUnsupported.response(fmt.Sprintf("This API key carries restrictions this gateway cannot enforce yet (%s); it is refused until the gateway is upgraded.", clip(k.unsupported))), CodeUnsupportedKey
	}
	need, err := s.routes.need(r.Method, r.Path, r.Scope, r.HasScope)
	if err != nil {
		return denyPath.response(fmt.Sprintf("The request path cannot be authorized: %s.", err.(*reqpath.Error).Reason)), CodeInvalidPath
	}
	if missing, ok := need.missing(k.policy.scopes); ok {
		return denyScope.response(fmt.Sprintf("This API key lacks the %q scope that %s %s requires.", clip(missing), clip(r.Method), clip(trimQuery(r.Path))),
			header("www-authenticate", `Bearer realm="keygate", error="insufficient_scope", scope="`+quotable(clip(missing))+`"`)), CodeInsufficientScope
	}
	if ips := k.policy.ips; ips != nil {
		if resp := s.denyAddress(ips, r); resp != nil {
			return resp, CodeIPNotAllowed
		}
	}
	var acct *Account
	if !k.policy.test() {
		var err error
		if acct, err = s.account(ctx, k.AccountID); err != nil {
			s.log.Debug("key store unavailable", "err", err)
			return s.static[msgUnavailable], CodeUnavailable
		}
	}
	plan, deny := s.plan(k, r, acct)
	if deny != nil {
		return deny, CodeRefused
	}
	if acct != nil && acct.Exact().Cmp(0) <= 0 {
		return denyBalance.response(fmt.Sprintf("Your balance is %s %s; top up to continue.", money.FormatExact(acct.Exact(), acct.Currency), acct.Currency)), CodeNoBalance
	}
	var h holding
	if resp, code := s.holdFunds(ctx, k, acct, &plan, &h); resp != nil {
		return resp, code
	}
	var taken ratelimit.Result
	rl, resp, code := s.takeRequest(ctx, k, &taken)
	if resp == nil {
		resp, code = s.takeBudgets(ctx, k, &plan, &h)
	}
	if resp != nil {
		s.release(ctx, k, acct, &plan, &h)
		if rl != nil { // taken before a later row denied
			s.limiter.Settle(ctx, &k.rate, k.budget, *s.limitOf(k), rl.Window, -1)
		}
		return resp, code
	}
	return s.allow(k, acct, rl, &h, s.reserve(k, acct, &plan, &h, now)), CodeOK
}

// takeRequest takes one request of the key's rate limit, if it has one,
// into r (the caller's, so that it stays on the stack), and returns r
// when it was taken.
func (s *Server) takeRequest(ctx context.Context, k *Key, r *ratelimit.Result) (*ratelimit.Result, *authv3.CheckResponse, string) {
	limit := s.limitOf(k)
	if limit == nil {
		return nil, nil, ""
	}
	*r = s.limiter.Take(ctx, &k.rate, k.budget, *limit, 1)
	switch {
	case r.Unavailable:
		return nil, s.static[msgBudgetUnavailable], CodeUnavailable
	case !r.Allowed:
		return nil, s.denyRate(k, r), CodeRateLimited
	}
	return r, nil, ""
}

// maxRetryWait is the longest wait a 429 asks clients to sleep through:
// beyond it, x-should-retry: false tells SDKs to give up at once rather
// than hang (the OpenAI Node SDK sleeps any retry-after).
const maxRetryWait = 60 * time.Second

func (s *Server) denyRate(k *Key, r *ratelimit.Result) *authv3.CheckResponse {
	wait := seconds(int64(r.Reset))
	big := new(bigNumbers)
	big.init()
	hs := append(s.headers.appendRate(nil, r, big), header("retry-after", wait))
	if r.Reset > maxRetryWait {
		hs = append(hs, header("x-should-retry", "false"))
	}
	return denyRateLimit.response(fmt.Sprintf("Rate limit reached for key %s: %s in this window. Retry in %ss.", k.ID, plural(r.Limit, "request"), wait), hs...)
}

// plural writes n things: "1 request", "600 requests".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
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

// limitOf is the key's rate limit: its own, none, or the default; nil is
// unlimited.
func (s *Server) limitOf(k *Key) *ratelimit.Limit {
	switch {
	case k.policy.limit != nil:
		return k.policy.limit
	case k.policy.unlimited:
		return nil
	}
	return s.limit
}

// threshold is the account's low-balance threshold in its minor units.
func (s *Server) threshold(a *Account) int64 {
	if a.LowBalanceThreshold != nil {
		return *a.LowBalanceThreshold
	}
	if money.Decimals(a.Currency) == 0 {
		return s.lowBalance0
	}
	return s.lowBalance2
}

// maxEcho bounds what of a request value is repeated in a deny.
const maxEcho = 200

// clip cuts a request value repeated in a deny to maxEcho bytes, on a
// UTF-8 boundary where there is one.
func clip(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	i := maxEcho
	for i > maxEcho-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// quotable keeps only the characters an RFC 6750 quoted value may hold
// (printable ASCII but the double quote and the backslash), so that the
// header stays valid.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
