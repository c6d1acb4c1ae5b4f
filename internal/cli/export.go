package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
)

func runUsage(ctx context.Context, args []string, io IO) error {
	if len(args) == 0 {
		return usagef("%s", groupUsage("usage "))
	}
	switch args[0] {
	case "export":
		return usageExport(ctx, args[1:], io)
	case "help", "-h", "--help":
		fmt.Fprintln(io.Out, groupUsage("usage "))
		return nil
	}
	return usagef("unknown command \"usage %s\"; want export", args[0])
}

// csvHeader names the columns of usage export --format csv.
var csvHeader = []string{"reservation_id", "key_id", "account_id", "model", "tokens_in", "cached_tokens_in", "tokens_out",
	"cost", "currency", "status", "created_at", "settled_at"}

func usageExport(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("usage export", flag.ContinueOnError)
	cf := addConnFlags(fs)
	sinceText := fs.String("since", "", "first settlement time: a `DURATION` ago (36h, 7d) or an RFC 3339 time (required)")
	untilText := fs.String("until", "", "end (excluded), a `DURATION` ago or an RFC 3339 time (default: now)")
	account := fs.String("account", "", "only settlements of account `ACCT`")
	format := fs.String("format", "jsonl", "`csv|jsonl`: jsonl, each settlement a line of JSON as the ledger stores it, or csv, a header then a row each")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	now := time.Now()
	since, err := parseWhen("--since", *sinceText, now)
	if err != nil {
		return err
	}
	until := now
	if *untilText != "" {
		if until, err = parseWhen("--until", *untilText, now); err != nil {
			return err
		}
	}
	switch {
	case !since.Before(until):
		return usagef("--since: %s is not before --until %s", timeText(since), timeText(until))
	case *account != "" && !store.ValidAccountID(*account):
		return usagef("--account: %q is not an account id", *account)
	case *format != "csv" && *format != "jsonl":
		return usagef("--format: %q is not csv or jsonl", *format)
	}
	a, err := cf.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	return a.export(ctx, io, *account, since, until, *format == "csv")
}

// parseWhen reads a time: RFC 3339, or a duration before now ("36h",
// "7d").
func parseWhen(flagName, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, usagef("%s is required: a duration ago like 7d or 36h, or an RFC 3339 time", flagName)
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := admin.ParseAge(s)
	if err != nil {
		return time.Time{}, usagef("%s: %q is not a duration ago like 7d or 36h, nor an RFC 3339 time like 2026-11-01T00:00:00Z", flagName, s)
	}
	return now.Add(-d), nil
}

// export writes the settlements of account ("" for all) settled from
// since until before until, one a line.
func (a *session) export(ctx context.Context, io IO, account string, since, until time.Time, asCSV bool) error {
	out := bufio.NewWriter(io.Out)
	w := csv.NewWriter(out)
	if asCSV {
		_ = w.Write(csvHeader)
	}
	n := 0
	bad, err := a.svc.Settlements(ctx, account, since, until, func(raw []byte, s *settle.Settlement) error {
		n++
		if asCSV {
			return w.Write(csvRow(s))
		}
		var line bytes.Buffer
		if err := json.Compact(&line, raw); err != nil {
			return err
		}
		line.WriteByte('\n')
		_, err := out.Write(line.Bytes())
		return err
	})
	w.Flush()
	if werr := errors.Join(w.Error(), out.Flush()); err == nil && werr != nil {
		err = fmt.Errorf("write output: %w", werr)
	}
	if err != nil {
		return err
	}
	if bad > 0 {
		fmt.Fprintf(io.Err, "warning: skipped %d ledger messages that are not settlements\n", bad)
	}
	fmt.Fprintf(io.Err, "exported %d settlements\n", n)
	return nil
}

// csvRow is a settlement as a row of csvHeader's columns.
func csvRow(s *settle.Settlement) []string {
	cost, err := money.Exact{}.AddNanos(s.Cost)
	costText := money.FormatExact(cost, s.Currency)
	if err != nil {
		costText = s.CostText
	}
	return []string{cell(s.Reservation), cell(s.Key), cell(s.Account), cell(s.Model),
		strconv.FormatInt(s.TokensIn, 10), strconv.FormatInt(s.CachedIn, 10), strconv.FormatInt(s.TokensOut, 10),
		costText, cell(s.Currency), cell(s.Status), s.CreatedAt.UTC().Format(time.RFC3339Nano), s.SettledAt.UTC().Format(time.RFC3339Nano)}
}

// cell is a text field as CSV prints it. A model name is the client's to
// choose: one a spreadsheet would read as a formula gets a leading "'",
// and control characters (a terminal's escapes) become U+FFFD.
func cell(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return unicode.ReplacementChar
		}
		return r
	}, s)
	if s != "" && strings.ContainsRune("=+-@", rune(s[0])) {
		return "'" + s
	}
	return s
}
