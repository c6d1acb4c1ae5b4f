// Package settle carries a metered request from its check to its debit:
// the reservation a check makes, its record in NATS (which fires the
// reservation's expiry at its TTL), and its settlement from the
// response's usage, exactly once, by the keygate that holds it or, when
// that keygate is gone, by any other.
package settle

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// Reservation is what a check held for a metered request.
type Reservation struct {
	ID       string `json:"id"`
	Holder   string `json:"holder"` // the keygate that made it
	Account  string `json:"account_id"`
	Key      string `json:"key_id"`
	Model    string `json:"model,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Charge prices the request as the check did: settled by another
	// keygate, or after a change of prices, it costs the same.
	Charge Charge `json:"charge"`
	// The estimate: input and output tokens, and what they can cost.
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	Estimate     int64 `json:"estimate_nanos"`
	// Held is what is held of the account's balance (0: none).
	Held int64 `json:"held_nanos,omitempty"`
	// Tokens and Spend are the takes of the key's token limit and spend
	// budget, if it has them.
	Tokens  *Take     `json:"tokens,omitempty"`
	Spend   *Take     `json:"spend,omitempty"`
	Created time.Time `json:"created_at"`
	Expires time.Time `json:"expires_at"`
}

// idOrEmpty is r's id, "" for a nil r.
func (r *Reservation) idOrEmpty() string {
	if r == nil {
		return ""
	}
	return r.ID
}

// Charge is pricing.Charge as a reservation records it.
type Charge struct {
	Flat        int64 `json:"flat_nanos,omitempty"`
	Tokens      bool  `json:"tokens,omitempty"`
	Input       int64 `json:"input_nanos,omitempty"`
	CachedInput int64 `json:"cached_input_nanos,omitempty"`
	Output      int64 `json:"output_nanos,omitempty"`
}

// ChargeOf records c.
func ChargeOf(c pricing.Charge) Charge {
	return Charge{Flat: c.Flat, Tokens: c.Tokens, Input: c.Price.Input, CachedInput: c.Price.CachedInput, Output: c.Price.Output}
}

// pricing is the charge again.
func (c Charge) pricing() pricing.Charge {
	return pricing.Charge{Outcome: pricing.Metered, Flat: c.Flat, Tokens: c.Tokens,
		Price: pricing.Price{Input: c.Input, CachedInput: c.CachedInput, Output: c.Output}}
}

// Take is one take of a budget of the fleet engine, as Settle needs it.
type Take struct {
	Budget   string             `json:"budget"`
	Units    int64              `json:"units"`
	Window   int64              `json:"window_start_ns"`
	Limit    int64              `json:"limit"`
	Len      time.Duration      `json:"window_ns"`
	Calendar ratelimit.Calendar `json:"calendar,omitempty"`
}

// limit is the take's limit.
func (t *Take) limit() ratelimit.Limit {
	return ratelimit.Limit{Units: t.Limit, Window: t.Len, Calendar: t.Calendar}
}

// A reservation id is "res_", the holder's id, "_", the number of the
// batch its record is written in, "_", its place in the batch, "_" and
// the account's id: what a settlement needs to find the holder, the
// record and the settlement entry. The holder's id is new at every
// start, so ids never repeat.
const idPrefix = "res_"

// newID is the id of the reservation at place i of batch b of holder's.
func newID(holder string, b uint64, i int, account string) string {
	var num [20]byte
	var sb strings.Builder
	sb.Grow(len(idPrefix) + len(holder) + len(account) + 24)
	sb.WriteString(idPrefix)
	sb.WriteString(holder)
	sb.WriteByte('_')
	sb.Write(strconv.AppendUint(num[:0], b, 10))
	sb.WriteByte('_')
	sb.Write(strconv.AppendInt(num[:0], int64(i), 10))
	sb.WriteByte('_')
	sb.WriteString(account)
	return sb.String()
}

// ErrUnknown is a reservation id that names no reservation.
var ErrUnknown = errors.New("unknown reservation")

// reservationID is a reservation id read.
type reservationID struct {
	holder  string
	batch   uint64
	index   int // in its batch
	account string
}

// parseID reads reservation id.
func parseID(id string) (reservationID, error) {
	rest, ok := strings.CutPrefix(id, idPrefix)
	holder, rest, ok2 := strings.Cut(rest, "_")
	b, rest, ok3 := strings.Cut(rest, "_")
	i, account, ok4 := strings.Cut(rest, "_")
	batch, err := strconv.ParseUint(b, 10, 64)
	index, err2 := strconv.ParseUint(i, 10, 16)
	if !ok || !ok2 || !ok3 || !ok4 || err != nil || err2 != nil || !validToken(holder) || !store.ValidAccountID(account) {
		return reservationID{}, ErrUnknown
	}
	return reservationID{holder: holder, batch: batch, index: int(index), account: account}, nil
}

// validToken reports whether s can be a NATS subject token of an id: 1
// to 64 letters and digits.
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
