package authz

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/meter"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/settle"
)

// Metering's error codes, beside the decision table's.
const (
	CodeUnsupportedKey = "unsupported_key"
	CodeBudgetExceeded = "budget_exceeded"
	CodeRefused        = "request_refused" // the metrics label of meter's refusals (the body carries its own code)
)

var (
	denyUnsupported = denial{403, CodeUnsupportedKey, "permission_error", codes.PermissionDenied, ""}
	denyBudget      = denial{429, CodeBudgetExceeded, "insufficient_quota", codes.ResourceExhausted, ""}
)

// meterKey is what metering reads of k: prices apply to live keys.
func (s *Server) meterKey(k *Key) meter.Key {
	live := !k.policy.test() && s.prices != nil
	return meter.Key{Models: k.policy.models, Tokens: k.policy.tokens != nil, Spend: live && k.policy.spend != nil, Money: live}
}

// plan decides what r holds when k's restrictions or prices apply.
func (s *Server) plan(k *Key, r *Request, acct *Account) (meter.Plan, *authv3.CheckResponse) {
	mk := s.meterKey(k)
	if len(mk.Models) == 0 && !mk.Tokens && !mk.Spend && !mk.Money {
		return meter.Plan{}, nil
	}
	path, route, ok := s.routes.configured(r.Method, r.Path)
	if !ok {
		return meter.Plan{}, denyPath.response("The request path has more than one reading; a key with limits or prices needs it in plain form.")
	}
	_, query, _ := strings.Cut(r.Path, "?")
	mr := meter.Request{Method: r.Method, Path: path, Query: query, Route: route, Body: r.Body, HasBody: r.HasBody, Partial: r.partial(),
		NoBody: r.noBody(), ContentType: r.meta[metaContentType], Encoding: r.meta[metaEncoding], Ambiguous: r.ambiguous(),
		Upgrade: r.meta[metaUpgrade] != "" || r.conflicts&(1<<metaUpgrade) != 0}
	if acct != nil {
		mr.Currency = acct.Currency
	}
	p := meter.Decide(mk, mr, s.prices)
	if d := p.Deny; d != nil {
		return p, refusal(d)
	}
	return p, nil
}

// partial reports whether the proxy sent less of the body than there is.
func (r *Request) partial() bool {
	if r.meta[metaPartial] == "true" {
		return true
	}
	if r.meta[metaLength] == "" {
		return false
	}
	n, err := strconv.ParseInt(r.meta[metaLength], 10, 64)
	return err == nil && n > int64(len(r.Body))
}

// noBody reports whether the request has no body.
func (r *Request) noBody() bool {
	return len(r.Body) == 0 && (r.meta[metaLength] == "" || r.meta[metaLength] == "0") && r.meta[metaTransfer] == ""
}

// refusal is the response of a meter deny.
func refusal(d *meter.Deny) *authv3.CheckResponse {
	g := codes.InvalidArgument
	if d.Status == 403 {
		g = codes.PermissionDenied
	}
	return denial{d.Status, d.Code, d.Type, g, ""}.responseParam(d.Message, d.Param)
}

// holding is what a check holds for a metered request, released if a
// later step denies it.
type holding struct {
	funds  int64 // of the balance
	tokens *ratelimit.Result
	spend  *ratelimit.Result
}

// holdFunds holds the plan's estimate of the account's balance.
func (s *Server) holdFunds(ctx context.Context, k *Key, acct *Account, p *meter.Plan, h *holding) (*authv3.CheckResponse, string) {
	if s.funds == nil || acct == nil || k.policy.test() || p.Estimate <= 0 {
		return nil, ""
	}
	r := s.funds.Hold(ctx, acct.ID, p.Estimate)
	switch {
	case r.OK:
		h.funds = p.Estimate
		return nil, ""
	case r.Unavailable:
		return s.static[msgUnavailable], CodeUnavailable
	}
	est, bal := formatNanos(p.Estimate, acct.Currency), money.FormatExact(r.Balance, acct.Currency)
	if r.Busy {
		return denyBalance.responseRetry(fmt.Sprintf("Your balance of %s %s is held by requests in flight; this request can cost up to %s %s. Retry in a moment.",
			bal, acct.Currency, est, acct.Currency)), CodeNoBalance
	}
	return denyBalance.response(fmt.Sprintf("Your balance is %s %s and this request can cost up to %s %s; top up to continue.",
		bal, acct.Currency, est, acct.Currency)), CodeNoBalance
}

// takeBudgets takes the plan's tokens and cost from the key's token
// limit and spend budget.
func (s *Server) takeBudgets(ctx context.Context, k *Key, p *meter.Plan, h *holding) (*authv3.CheckResponse, string) {
	if t := k.policy.tokens; t != nil && p.Metered {
		r := s.limiter.Take(ctx, nil, "tok."+k.budget, *t, p.InputTokens+p.OutputTokens)
		switch {
		case r.Unavailable:
			return s.static[msgBudgetUnavailable], CodeUnavailable
		case !r.Allowed:
			return s.denyTokens(k, &r, p.InputTokens+p.OutputTokens), CodeRateLimited
		}
		h.tokens = &r
	}
	if b := k.policy.spend; b != nil && p.Metered && s.meterKey(k).Spend && p.Estimate > 0 {
		r := s.limiter.Take(ctx, nil, "spend."+k.budget, *b, p.Estimate)
		switch {
		case r.Unavailable:
			return s.static[msgBudgetUnavailable], CodeUnavailable
		case !r.Allowed:
			return s.denySpend(k, &r), CodeBudgetExceeded
		}
		h.spend = &r
	}
	return nil, ""
}

// release gives back what h holds, for a request denied after all.
func (s *Server) release(ctx context.Context, k *Key, acct *Account, p *meter.Plan, h *holding) {
	if h.funds > 0 {
		s.funds.Release(acct.ID, h.funds)
	}
	if h.tokens != nil {
		s.limiter.Settle(ctx, nil, "tok."+k.budget, *k.policy.tokens, h.tokens.Window, -(p.InputTokens + p.OutputTokens))
	}
	if h.spend != nil {
		s.limiter.Settle(ctx, nil, "spend."+k.budget, *k.policy.spend, h.spend.Window, -p.Estimate)
	}
}

// reserve records what h holds for the request's settlement and returns
// its id.
func (s *Server) reserve(k *Key, acct *Account, p *meter.Plan, h *holding, now time.Time) string {
	if s.settler == nil || !p.Metered {
		return ""
	}
	r := settle.Reservation{Account: k.AccountID, Key: k.ID, Model: p.Model,
		Charge: settle.ChargeOf(p.Charge), InputTokens: p.InputTokens, OutputTokens: p.OutputTokens, Estimate: p.Estimate,
		Held: h.funds, Created: now, Expires: now.Add(s.holdTTL)}
	if acct != nil {
		r.Currency = acct.Currency
	}
	if h.tokens != nil {
		r.Tokens = take("tok."+k.budget, *k.policy.tokens, h.tokens, p.InputTokens+p.OutputTokens)
	}
	if h.spend != nil {
		r.Spend = take("spend."+k.budget, *k.policy.spend, h.spend, p.Estimate)
	}
	return s.settler.Reserve(r)
}

func take(budget string, l ratelimit.Limit, r *ratelimit.Result, units int64) *settle.Take {
	return &settle.Take{Budget: budget, Units: units, Window: r.Window, Limit: l.Units, Len: l.Window, Calendar: l.Calendar}
}

func (s *Server) denyTokens(k *Key, r *ratelimit.Result, want int64) *authv3.CheckResponse {
	big := new(bigNumbers)
	big.init()
	wait := seconds(int64(r.Reset))
	hs := append(s.headers.appendTokens(nil, r, big), header("retry-after", wait))
	if r.Reset > maxRetryWait || want > r.Limit { // a request over the whole limit fits no window
		hs = append(hs, header("x-should-retry", "false"))
	}
	return denyRateLimit.response(fmt.Sprintf("Rate limit reached for key %s on tokens: %d of %s in this window remain, and this request can use up to %d. Retry in %ss.",
		k.ID, r.Remaining, plural(r.Limit, "token"), want, wait), hs...)
}

func (s *Server) denySpend(k *Key, r *ratelimit.Result) *authv3.CheckResponse {
	wait := seconds(int64(r.Reset))
	hs := []*corev3.HeaderValueOption{header("retry-after", wait)}
	if r.Reset > maxRetryWait {
		hs = append(hs, header("x-should-retry", "false"))
	}
	return denyBudget.response(fmt.Sprintf("The spend budget of key %s is used up for this period; it renews in %ss.", k.ID, wait), hs...)
}

// formatNanos writes n nanos of currency's minor unit in major units.
func formatNanos(n int64, currency string) string {
	e, _ := money.Exact{}.AddNanos(n)
	return money.FormatExact(e, currency)
}
