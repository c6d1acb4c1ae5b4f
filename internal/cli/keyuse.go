package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

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

// dayView is one day of a key's use as keys usage prints it.
type dayView struct {
	Date   string           `json:"date"`
	Counts map[string]int64 `json:"counts"`
	Total  int64            `json:"total"`
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
	if _, _, err := a.store.KeyByID(ctx, id); err != nil {
		return notFound("key", id, err)
	}
	u, err := a.store.KeyUsage(ctx, id)
	if err != nil {
		return err
	}
	v := usageOf(u, *days, time.Now())
	if af.json {
		return writeJSON(io.Out, v)
	}
	return printUsage(io, v)
}

// usageOf is u's last n days, oldest first, days without use included.
func usageOf(u *store.Usage, n int, now time.Time) usageView {
	v := usageView{KeyID: u.KeyID, LastUsedAt: u.LastUsedAt, Days: []dayView{}}
	for i := n - 1; i >= 0; i-- {
		date := now.UTC().AddDate(0, 0, -i).Format(store.DayFormat)
		d := dayView{Date: date, Counts: map[string]int64{}}
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
	fmt.Fprintln(tw, "total\t")
	for _, d := range v.Days {
		fmt.Fprintf(tw, "%s\t", d.Date)
		for _, o := range usage.Outcomes {
			fmt.Fprintf(tw, "%d\t", d.Counts[o])
		}
		fmt.Fprintf(tw, "%d\t\n", d.Total)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
