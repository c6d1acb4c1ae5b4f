package settle

import (
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/pricing"
)

// Settlement is a settled request: the ledger's line, written once with
// its debit.
type Settlement struct {
	Reservation string `json:"reservation_id"`
	Key         string `json:"key_id"`
	Account     string `json:"account_id"`
	Model       string `json:"model,omitempty"`
	TokensIn    int64  `json:"tokens_in"`
	CachedIn    int64  `json:"cached_tokens_in,omitempty"`
	TokensOut   int64  `json:"tokens_out"`
	// Cost is in nanos (1e-9) of the currency's minor unit; CostText the
	// same in major units, exactly.
	Cost      int64     `json:"cost_nanos"`
	CostText  string    `json:"cost"`
	Currency  string    `json:"currency,omitempty"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	SettledAt time.Time `json:"settled_at"`
	Keygate   string    `json:"keygate"` // the keygate that settled it
}

// Statuses of a settlement.
const (
	StatusSettled = "settled"  // from the response's usage
	StatusFailed  = "failed"   // the backend failed, or the client left before any output: no charge
	StatusExpired = "expired"  // no settlement within the hold's TTL: charged at the estimate
	StatusNoUsage = "no_usage" // the response told no usage: charged at the estimate
)

// Outcome is what a response tells of a request.
type Outcome struct {
	Usage    pricing.Usage
	HasUsage bool
	// Failed: the backend answered an error, or the client went away
	// before any output. It charges nothing.
	Failed bool
	// Expired: the reservation reached its TTL unsettled.
	Expired bool
}

// settlement is r settled with o at now by keygate by: what it used,
// what that costs, and how it was decided. A response without usage
// costs the estimate, and so does a usage that cannot be charged (a
// count below 0, a cost out of range), which no retry would charge.
func (r *Reservation) settlement(o Outcome, now time.Time, by string) *Settlement {
	s := &Settlement{Reservation: r.ID, Key: r.Key, Account: r.Account, Model: r.Model, Currency: r.Currency,
		CreatedAt: r.Created, SettledAt: now.UTC(), Keygate: by}
	cost, err := r.Charge.pricing().Cost(o.Usage)
	switch {
	case o.Failed:
		s.Status = StatusFailed
	case o.HasUsage && err == nil:
		s.Status, s.TokensIn, s.CachedIn, s.TokensOut, s.Cost = StatusSettled, o.Usage.Input, o.Usage.CachedInput, o.Usage.Output, cost
	default:
		s.Status, s.TokensIn, s.TokensOut, s.Cost = StatusNoUsage, r.InputTokens, r.OutputTokens, r.Estimate
	}
	if o.Expired {
		s.Status = StatusExpired
	}
	total, _ := money.Exact{}.AddNanos(s.Cost) // 0 to MaxInt64 nanos: in range
	s.CostText = money.FormatExact(total, r.Currency)
	return s
}
