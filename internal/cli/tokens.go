package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/keygate/keygate/internal/admin"
)

func runTokens(ctx context.Context, args []string, io IO) error {
	if len(args) == 0 {
		return usagef("%s", groupUsage("tokens "))
	}
	switch args[0] {
	case "create":
		return tokensCreate(ctx, args[1:], io)
	case "list":
		return tokensList(ctx, args[1:], io)
	case "revoke":
		return tokensRevoke(ctx, args[1:], io)
	case "new":
		return tokensNew(args[1:], io)
	case "help", "-h", "--help":
		fmt.Fprintln(io.Out, groupUsage("tokens "))
		return nil
	}
	return usagef("unknown command \"tokens %s\"; want create, list, revoke or new", args[0])
}

// tokenNames are the tokens commands' names of the admin package's
// fields.
var tokenNames = map[string]string{"scopes": "--scope"}

// newTokenView is a token just made, the only view with the token itself.
type newTokenView struct {
	admin.TokenView
	Token string `json:"token"`
}

func tokensCreate(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("tokens create", flag.ContinueOnError)
	af := addAdminFlags(fs)
	scope := fs.String("scope", "", "what the token may do, `read|keys|balances` or a comma-separated list: read reads; keys also changes keys, balances also changes balances (required)")
	name := fs.String("name", "", "`NAME`, a label for people")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *scope == "" {
		return usagef("--scope is required: read, keys or balances")
	}
	scopes, err := admin.CheckScopes(strings.Split(*scope, ","))
	if err != nil {
		return fail(err, tokenNames)
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	v, secret, err := a.svc.CreateToken(ctx, a.by, *name, scopes)
	if refused(err) {
		return fail(err, tokenNames)
	}
	if af.json {
		return printed(writeJSON(io.Out, newTokenView{TokenView: v, Token: secret}), err)
	}
	fmt.Fprintf(io.Out, "Created admin token %s, scopes %s.\n", v.ID, strings.Join(v.Scopes, ","))
	fmt.Fprintf(io.Out, "Admin token: %s\n", secret)
	fmt.Fprintln(io.Out, "Store it now: it will not be shown again.")
	return err
}

// tokensNew prints a new admin token and stores nothing: the token is
// for a file that keygate serve reads (api_token_file), which stores it.
func tokensNew(args []string, io IO) error {
	fs := flag.NewFlagSet("tokens new", flag.ContinueOnError)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	secret, err := admin.NewToken()
	if err != nil {
		return err
	}
	fmt.Fprintln(io.Out, secret)
	return nil
}

func tokensList(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("tokens list", flag.ContinueOnError)
	af := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	views, err := a.svc.ListTokens(ctx)
	if err != nil {
		return err
	}
	if af.json {
		return writeJSON(io.Out, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(io.Out, "no admin tokens")
		return nil
	}
	tw := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tSTATUS\tCREATED\tLAST USED")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, orDash(v.Name), strings.Join(v.Scopes, ","), v.Status,
			timeText(v.CreatedAt), optTime(v.LastUsedAt, "never"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func tokensRevoke(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("tokens revoke", flag.ContinueOnError)
	af := addAdminFlags(fs)
	pos, err := parse(fs, args, "TOKEN_ID")
	if err != nil {
		return err
	}
	a, err := af.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	v, already, err := a.svc.RevokeToken(ctx, a.by, pos[0])
	if refused(err) {
		return fail(err, tokenNames)
	}
	if af.json {
		return printed(writeJSON(io.Out, v), err)
	}
	if already {
		fmt.Fprintf(io.Out, "Admin token %s was already revoked at %s.\n", v.ID, timeText(*v.RevokedAt))
		return nil
	}
	fmt.Fprintf(io.Out, "Revoked admin token %s: the admin API refuses it from now on.\n", v.ID)
	return err
}
