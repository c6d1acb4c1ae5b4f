package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/broker"
)

// runAudit prints the audit trail: "keygate audit [--key ID] [--account
// ID] [--since 24h] [--json]". It reads the stream as it is, creating and
// changing nothing, and ends at the last record stored when it began.
func runAudit(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	a := addAdminFlags(fs)
	key := fs.String("key", "", "only the changes of the key with this `ID`")
	account := fs.String("account", "", "only the changes of the account with this `ID`")
	since := fs.String("since", "24h", "changes from this long ago (a `DURATION` like 24h or 7d) or from an RFC 3339 time")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := a.load(io)
	if err != nil {
		return err
	}
	f, err := auditFilter(*key, *account, *since, cfg.Keys.Format(), time.Now())
	if err != nil {
		return err
	}
	shown := redactURL(cfg.NATS.URL)
	conn, err := broker.Connect(brokerOptions(cfg.NATS))
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s: %s", shown, redactURL(cause(err).Error()))
	}
	defer conn.Close()
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	trail, err := audit.Bind(octx, conn.JS, audit.Options{KeyFormat: cfg.Keys.Format()})
	if errors.Is(err, audit.ErrNoStream) {
		fmt.Fprintf(io.Err, "no audit records: NATS at %s has no stream %s\n", shown, audit.DefaultStream)
		return nil
	}
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", shown, err)
	}
	return printAudit(ctx, trail, f, io, a.json)
}

// auditFilter is what the flags select; its errors name the flag and
// never quote an id, which could be a key pasted in its place.
func auditFilter(key, account, since string, format apikey.Format, now time.Time) (audit.Filter, error) {
	var f audit.Filter
	switch {
	case key != "" && account != "":
		return f, usagef("--key and --account: give one or the other")
	case key != "":
		f.Kind, f.TargetID = audit.TargetKey, key
	case account != "":
		f.Kind, f.TargetID = audit.TargetAccount, account
	}
	if f.TargetID != "" {
		if err := audit.CheckID(f.TargetID, format); err != nil {
			return f, usagef("--%s: %v", f.Kind, err)
		}
	}
	if t, err := time.Parse(time.RFC3339, since); err == nil {
		f.Since = t
		return f, nil
	}
	d, err := admin.ParseAge(since)
	if err != nil || d == 0 {
		return f, usagef("--since: %q is not a duration like 24h or 7d, nor an RFC 3339 time", since)
	}
	f.Since = now.Add(-d)
	return f, nil
}

// printAudit prints the records as JSON lines or as a table. Messages on
// the stream that are not records are reported on stderr, and make the
// command fail once it has printed the rest.
func printAudit(ctx context.Context, trail *audit.Log, f audit.Filter, io IO, asJSON bool) error {
	tw := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tTARGET\tCHANGED")
	}
	bad := 0
	for r, err := range trail.Read(ctx, f) {
		switch {
		case errors.Is(err, audit.ErrBadRecord):
			bad++
			fmt.Fprintf(io.Err, "keygate audit: %v\n", err)
		case err != nil:
			return err
		case asJSON:
			if err := writeJSON(io.Out, r); err != nil {
				return err
			}
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", timeText(r.At), safeText(actorText(r.Actor)), safeText(r.Action),
				safeText(r.Target.Kind+":"+r.Target.ID), safeText(changedFields(r.Before, r.After)))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if bad == 1 {
		return fmt.Errorf("a message in stream %s is not an audit record", trail.Stream())
	}
	if bad > 1 {
		return fmt.Errorf("%d messages in stream %s are not audit records", bad, trail.Stream())
	}
	return nil
}

// actorText is "cli:ana@laptop", "admin_token:tok_1", "keygate".
func actorText(a audit.Actor) string {
	s := a.Kind
	if a.ID != "" {
		s += ":" + a.ID
	}
	if who := strings.Trim(a.User+"@"+a.Host, "@"); who != "" {
		s += ":" + who
	}
	return s
}

// changedFields names the fields a change changed, members of objects
// changed on both sides by their path ("rate_limit.requests"), sorted;
// "-" for none.
func changedFields(before, after map[string]any) string {
	var paths []string
	var walk func(prefix string, b, a map[string]any)
	walk = func(prefix string, b, a map[string]any) {
		for name := range a {
			if _, ok := b[name]; !ok {
				paths = append(paths, prefix+name)
			}
		}
		for name, x := range b {
			bm, bok := x.(map[string]any)
			am, aok := a[name].(map[string]any)
			if bok && aok {
				walk(prefix+name+".", bm, am)
			} else {
				paths = append(paths, prefix+name)
			}
		}
	}
	walk("", before, after)
	if len(paths) == 0 {
		return "-"
	}
	slices.Sort(paths)
	return strings.Join(paths, ",")
}

// safeText replaces control characters, which a message that another
// NATS client wrote could hold, so that they neither break the table
// nor reach the terminal.
func safeText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
