package admin

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
)

// DayView is one UTC day of use: checks by outcome, and what the
// requests settled that day used and cost.
type DayView struct {
	Date      string           `json:"date"`
	Counts    map[string]int64 `json:"counts"`
	Total     int64            `json:"total"`
	TokensIn  int64            `json:"tokens_in"`
	TokensOut int64            `json:"tokens_out"`
	// Spend is what the day's settlements cost, exactly, in major units
	// by currency ({"MXN":"12.5000003"}).
	Spend map[string]string `json:"spend"`

	spend map[string]money.Exact
}

// UsageView is a key's use by day.
type UsageView struct {
	KeyID      string     `json:"key_id"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Days       []DayView  `json:"days"`
	// Skipped counts the ledger messages read that were not settlements.
	Skipped int `json:"-"`
}

// AccountUsageView is an account's use by day: every key's checks, and
// every settlement.
type AccountUsageView struct {
	AccountID string    `json:"account_id"`
	Days      []DayView `json:"days"`
	Skipped   int       `json:"-"`
}

// checkDays checks how many days of use are asked for.
func checkDays(days int) error {
	if days < 1 || days > store.MaxUsageDays {
		return invalid("days", "%d is not from 1 to %d", days, store.MaxUsageDays)
	}
	return nil
}

// KeyUsage is key id's use over its last days UTC days, today included.
func (s *Service) KeyUsage(ctx context.Context, id string, days int) (UsageView, error) {
	if err := checkDays(days); err != nil {
		return UsageView{}, err
	}
	k, _, err := s.st.KeyByID(ctx, id)
	if err != nil {
		return UsageView{}, s.keyNotFound(id, err)
	}
	u, err := s.st.KeyUsage(ctx, id)
	if err != nil {
		return UsageView{}, err
	}
	v := UsageView{KeyID: u.KeyID, LastUsedAt: u.LastUsedAt, Days: newDays(days, s.now())}
	addCounts(v.Days, u)
	v.Skipped, err = s.addSpend(ctx, k.AccountID, k.ID, v.Days)
	return v, err
}

// AccountUsage is account id's use over its last days UTC days, today
// included: the checks of all its keys and every settlement of the
// account. An account with neither a record nor keys is NotFound.
func (s *Service) AccountUsage(ctx context.Context, id string, days int) (AccountUsageView, error) {
	if err := s.checkAccount("account_id", id); err != nil {
		return AccountUsageView{}, err
	}
	if err := checkDays(days); err != nil {
		return AccountUsageView{}, err
	}
	x, err := s.index(ctx)
	if err != nil {
		return AccountUsageView{}, err
	}
	ids := x.accountIDs(id)
	if len(ids) == 0 {
		if _, _, err := s.st.Account(ctx, id); err != nil {
			return AccountUsageView{}, accountNotFound(id, err)
		}
	}
	v := AccountUsageView{AccountID: id, Days: newDays(days, s.now())}
	for _, kid := range ids {
		u, err := s.st.KeyUsage(ctx, kid)
		if err != nil {
			return AccountUsageView{}, err
		}
		addCounts(v.Days, u)
	}
	v.Skipped, err = s.addSpend(ctx, id, "", v.Days)
	return v, err
}

// newDays are the n UTC days to now, oldest first, empty.
func newDays(n int, now time.Time) []DayView {
	out := make([]DayView, 0, n)
	for i := n - 1; i >= 0; i-- {
		date := now.UTC().AddDate(0, 0, -i).Format(store.DayFormat)
		out = append(out, DayView{Date: date, Counts: map[string]int64{}, Spend: map[string]string{}, spend: map[string]money.Exact{}})
	}
	return out
}

// addCounts adds u's checks by outcome to days.
func addCounts(days []DayView, u *store.Usage) {
	for i := range days {
		d := &days[i]
		for o, c := range u.Days[d.Date] {
			d.Counts[o] += c
			d.Total += c
		}
	}
}

// addSpend adds to days what the settlements of account (of key keyID
// only, unless "") settled on those days (UTC) used and cost, from the
// ledger. It returns how many ledger messages were not settlements.
func (s *Service) addSpend(ctx context.Context, account, keyID string, days []DayView) (int, error) {
	if len(days) == 0 {
		return 0, nil
	}
	byDate := map[string]*DayView{}
	for i := range days {
		byDate[days[i].Date] = &days[i]
	}
	first, err := time.Parse(store.DayFormat, days[0].Date)
	if err != nil {
		return 0, err
	}
	own, err := s.Currency(ctx, account) // for a settlement that names none
	if err != nil {
		return 0, err
	}
	return s.Settlements(ctx, account, first, time.Time{}, func(_ []byte, st *settle.Settlement) error {
		d := byDate[st.SettledAt.UTC().Format(store.DayFormat)]
		if d == nil || keyID != "" && st.Key != keyID {
			return nil
		}
		cur := cmp.Or(st.Currency, own)
		d.TokensIn += st.TokensIn
		d.TokensOut += st.TokensOut
		sum, err := d.spend[cur].AddNanos(st.Cost)
		if err != nil {
			return fmt.Errorf("%s: spend in %s out of range", d.Date, cur)
		}
		d.spend[cur] = sum
		d.Spend[cur] = money.FormatExact(sum, cur)
		return nil
	})
}
