package cli

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/internal/usage"
)

// lastUsedText is the last use for people, marking unused keys.
func lastUsedText(v admin.KeyView) string {
	switch {
	case v.LastUsedAt == nil:
		return "never (unused)"
	case v.Unused:
		return timeText(*v.LastUsedAt) + " (unused)"
	}
	return timeText(*v.LastUsedAt)
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
	v, err := a.svc.KeyUsage(ctx, id, *days)
	if v.Skipped > 0 {
		fmt.Fprintf(io.Err, "warning: skipped %d ledger messages that are not settlements\n", v.Skipped)
	}
	if err != nil {
		return fail(err, nil)
	}
	if af.json {
		return writeJSON(io.Out, v)
	}
	return printUsage(io, v)
}

func printUsage(io IO, v admin.UsageView) error {
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
