package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// command is what a command's help says of it.
type command struct {
	// synopsis is as the README's command-line section writes it, without
	// "keygate " (a test keeps the two the same).
	synopsis string
	summary  string
}

// commands, by name as their flag sets are named.
var commands = map[string]command{
	"serve": {`serve [--config FILE] [--grpc-addr 127.0.0.1:9191] [--admin-addr 127.0.0.1:9090]
              [--http-addr ADDR] [--api-addr ADDR] [--nats-url URL] [--data-dir DIR]
              [--nats-listen 127.0.0.1:4222] [--check-config]`,
		"Run the ext_authz server. Without a NATS URL it runs NATS in-process. Settings come from --config, then KEYGATE_* variables, then flags."},
	"keys create": {`keys create --account ACCT [--name NAME] [--env live|test] [--scopes a,b]
                    [--rate-limit 600/1m|none] [--expires-in 720h] [--models LIST]
                    [--token-limit N/WINDOW] [--budget AMOUNT/PERIOD] [--allow-ips LIST] [--json]`,
		"Create an API key and print it once. Without --scopes the key has scope * (every route). --rate-limit N/WINDOW gives it its own limit (N from 1 to 1000000000000, at most one request per nanosecond of WINDOW), none makes it unlimited; without it the configured default_rate_limit applies. --models, --token-limit, --budget and --allow-ips (IP addresses or prefixes the key may be used from; elsewhere it gets 403 ip_not_allowed) restrict it (a record with any of them says \"v\":2)."},
	"keys update": {`keys update KEY_ID [--name NAME] [--scopes a,b] [--rate-limit N/WINDOW|none|default]
                   [--models LIST|none] [--token-limit N/WINDOW|none]
                   [--budget AMOUNT/PERIOD|none] [--allow-ips LIST|none]
                   [--expires-in DURATION|never] [--json]`,
		"Change what is given of a key, and nothing else, by compare-and-set; none removes a restriction. A revoked key is refused (exit 1)."},
	"keys list": {"keys list [--account ACCT] [--all] [--unused DURATION] [--json]",
		"List active keys (--all: revoked and expired ones too) with their last use; keys unused for 30 days, or never used, are marked unused. --unused 90d lists only keys unused for 90 days or never used."},
	"keys usage":  {"keys usage KEY_ID [--days 7] [--json]", "Show a key's checks per UTC day by outcome (ok or the deny's error code), from every keygate, and the tokens and spend of its requests settled that day, from its account's ledger."},
	"keys get":    {"keys get KEY_ID [--json]", "Show one key, its restrictions included. KEY_ID may also be the key itself, which is never printed."},
	"keys revoke": {"keys revoke KEY_ID [--json]", "Revoke a key: every keygate denies it within milliseconds."},
	"keys rotate": {"keys rotate KEY_ID [--grace 24h] [--force] [--json]", "Create a successor with the same account, name, env, scopes, limit (none included) and restrictions (models, token limit, budget, client addresses); the old key records it as successor_id and expires after the grace period (or keeps an earlier expiry). A key that already has a successor is refused (exit 1, naming it) unless --force, which makes another and leaves the first alone; so is a key with members this keygate does not know."},
	"balance get": {"balance get ACCT [--json]", "Show an account's balance, exact (with digits below the minor unit when it has any), what requests in flight hold of it, and what is available."},
	"balance set": {"balance set ACCT AMOUNT [--currency MXN] [--low-threshold AMOUNT] [--json]", "Set an account's balance to exactly AMOUNT, creating the account if needed. AMOUNT is a decimal in major units. Holds of requests in flight are kept."},
	"balance add": {"balance add ACCT AMOUNT [--json]          # AMOUNT may be negative: a debit", "Add AMOUNT (a decimal in major units; negative for a debit) to a balance; its remainder below a minor unit and its holds are kept."},
	"usage export": {`usage export --since DURATION|RFC3339 [--until DURATION|RFC3339] [--account ACCT]
                     [--format csv|jsonl]`,
		"Print the settled requests of the ledger, once each, settled from --since until before --until: one JSON object a line as the ledger stores it, or CSV with a header. Reads what the ledger holds when it starts, then ends."},
	"tokens create": {"tokens create --scope read|keys|balances [--name NAME] [--json]",
		"Create an admin API token and print it once (only its SHA-256 is stored). read allows every read of the API; keys also allows key changes, balances balance changes; give several as a comma-separated list."},
	"tokens new": {"tokens new",
		"Print a new admin API token and store nothing, for a file that keygate serve reads (api_token_file, e.g. a Kubernetes Secret): serve stores its record, with api_token_scopes, when it starts."},
	"tokens list":   {"tokens list [--json]", "List the admin API tokens with their scopes and last use (written at most once a minute)."},
	"tokens revoke": {"tokens revoke TOKEN_ID [--json]", "Revoke an admin API token: the API refuses it from the next request on."},
	"check":         {"check [--key KEY] [--method GET] [--path /v1/models] [--scope S] [--body JSON] [--client-ip IP] [--grpc-addr ADDR]", "Send one ext_authz Check to a running keygate, as Envoy would, and print the answer. The key defaults to $KEYGATE_API_KEY."},
	"settle":        {"settle RESERVATION_ID [--input N --output N [--cached N]] [--status 200] [--json]", "Settle a metered request with the usage its response reported, as a backend behind nginx or Traefik does (docs/money.md). Without usage it is charged its estimate; a status of 400 or more charges nothing."},
	"version":       {"version", "Print the version."},
	"audit":         {"audit [--key ID] [--account ID] [--since 24h] [--json]", "Show the audit trail, oldest first: every change made through the admin API or the command line, with who made it and the fields it changed (never a secret). It ends at the last record stored when it began. --key or --account shows the changes of one key or one account."},
}

// helpError asks Run to print the help of the command fs parses, and to
// succeed.
type helpError struct{ fs *flag.FlagSet }

func (*helpError) Error() string { return "help requested" }

// writeHelp prints a command's synopsis, summary and every flag with its
// default.
func writeHelp(w io.Writer, fs *flag.FlagSet) {
	c := commands[fs.Name()]
	synopsis := strings.ReplaceAll(c.synopsis, "\n", "\n       ") // aligned under "usage: "
	fmt.Fprintf(w, "usage: keygate %s\n\n%s\n", synopsis, c.summary)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if n++; n == 1 {
			fmt.Fprintln(tw, "\nflags:")
		}
		name, usage := flag.UnquoteUsage(f)
		arg := "--" + f.Name
		if name == strings.ToLower(name) && !strings.ContainsAny(name, "|/,") {
			name = strings.ToUpper(name) // "duration" -> DURATION, as synopses write values
		}
		if name != "" {
			arg += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", arg, usage)
	})
	_ = tw.Flush()
}

// groupUsage lists the commands whose names start with prefix ("" for
// all), as the help of a command group.
func groupUsage(prefix string) string {
	var names []string
	for name := range commands {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "usage: keygate %s<command> [arguments]\n\ncommands:\n", prefix)
	for _, name := range names {
		fmt.Fprintf(&b, "  keygate %s\n", commands[name].synopsis)
	}
	fmt.Fprintf(&b, "\n'keygate help COMMAND' or 'keygate COMMAND --help' describes one.")
	return b.String()
}

// oneLine is a synopsis on one line, for error messages.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "#")
	return strings.Join(strings.Fields(s), " ")
}
