package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/internal/usage"
)

// unusedAfter is how long without use marks a key unused in listings.
const unusedAfter = 30 * 24 * time.Hour

// lastUsedText is the last use for people, marking unused keys.
func lastUsedText(v keyView) string {
	switch {
	case v.LastUsedAt == nil:
		return "never (unused)"
	case v.Unused:
		return timeText(*v.LastUsedAt) + " (unused)"
	}
	return timeText(*v.LastUsedAt)
}

// parseDays reads a duration written as Go does ("36h") or in days
// ("90d"); "" is 0.
func parseDays(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 1 || d > 100*365 {
			return 0, fmt.Errorf("%q is not a number of days like 90d", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration like 90d or 36h", s)
	}
	return d, nil
}

// dayView is one day of a key's use as keys usage prints it: its checks
// by outcome, and what its settled requests used and cost.
type dayView struct {
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

// usageView is what keys usage prints.
type usageView struct {
	KeyID      string     `json:"key_id"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Days       []dayView  `json:"days"`
}

func keysUsage(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("keys usage", flag.ContinueOnError)
	af := addAdminFlags(fs)
	days := fs.Int("days", 7, "how many `DAYS` to show, today (UTC) included")
	pos, err := parse(fs, args, "KEY_ID")
	if err != nil {
		return err
	}
	if *days < 1 || *days > store.MaxUsageDays {
		return usagef("--days: %d is not from 1 to %d", *days, store.MaxUsageDays)
	}
	a, id, err := af.openKey(ctx, io, pos[0])
	if err != nil {
		return err
	}
	defer a.close()
	k, _, err := a.store.KeyByID(ctx, id)
	if err != nil {
		return notFound("key", id, err)
	}
	u, err := a.store.KeyUsage(ctx, id)
	if err != nil {
		return err
	}
	v := usageOf(u, *days, time.Now())
	if err := a.addSpend(ctx, io, k, v); err != nil {
		return err
	}
	if af.json {
		return writeJSON(io.Out, v)
	}
	return printUsage(io, v)
}

// addSpend adds to v's days what k's settlements of those days (by the
// time they settled, UTC) used and cost, from its account's ledger.
func (a *admin) addSpend(ctx context.Context, io IO, k *store.Key, v usageView) error {
	if len(v.Days) == 0 {
		return nil
	}
	days := map[string]*dayView{}
	for i := range v.Days {
		days[v.Days[i].Date] = &v.Days[i]
	}
	first, err := time.Parse(store.DayFormat, v.Days[0].Date)
	if err != nil {
		return err
	}
	own, err := a.currency(ctx, k.AccountID) // for a settlement that names none
	if err != nil {
		return err
	}
	bad, err := a.settlements(ctx, k.AccountID, first, time.Time{}, func(_ []byte, s *settle.Settlement) error {
		d := days[s.SettledAt.UTC().Format(store.DayFormat)]
		if d == nil || s.Key != k.ID {
			return nil
		}
		cur := cmp.Or(s.Currency, own)
		d.TokensIn += s.TokensIn
		d.TokensOut += s.TokensOut
		sum, err := d.spend[cur].AddNanos(s.Cost)
		if err != nil {
			return fmt.Errorf("%s: spend in %s out of range", d.Date, cur)
		}
		d.spend[cur] = sum
		d.Spend[cur] = money.FormatExact(sum, cur)
		return nil
	})
	if bad > 0 {
		fmt.Fprintf(io.Err, "warning: skipped %d ledger messages that are not settlements\n", bad)
	}
	return err
}

// usageOf is u's last n days, oldest first, days without use included.
func usageOf(u *store.Usage, n int, now time.Time) usageView {
	v := usageView{KeyID: u.KeyID, LastUsedAt: u.LastUsedAt, Days: []dayView{}}
	for i := n - 1; i >= 0; i-- {
		date := now.UTC().AddDate(0, 0, -i).Format(store.DayFormat)
		d := dayView{Date: date, Counts: map[string]int64{}, Spend: map[string]string{}, spend: map[string]money.Exact{}}
		for o, c := range u.Days[date] {
			d.Counts[o] = c
			d.Total += c
		}
		v.Days = append(v.Days, d)
	}
	return v
}

func printUsage(io IO, v usageView) error {
	fmt.Fprintf(io.Out, "key %s, last used %s\n", v.KeyID, optTime(v.LastUsedAt, "never"))
	tw := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "DATE\t")
	for _, o := range usage.Outcomes {
		fmt.Fprintf(tw, "%s\t", o)
	}
	fmt.Fprintln(tw, "total\ttokens_in\ttokens_out\tspend\t")
	for _, d := range v.Days {
		fmt.Fprintf(tw, "%s\t", d.Date)
		for _, o := range usage.Outcomes {
			fmt.Fprintf(tw, "%d\t", d.Counts[o])
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t\n", d.Total, d.TokensIn, d.TokensOut, spendText(d.Spend))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// spendText is a day's spend for people: "12.50 MXN", "-" for none.
func spendText(spend map[string]string) string {
	if len(spend) == 0 {
		return "-"
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(spend)) {
		parts = append(parts, spend[c]+" "+c)
	}
	return strings.Join(parts, " + ")
}
