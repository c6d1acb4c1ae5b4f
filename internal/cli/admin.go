package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"regexp"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/broker"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/store"
)

// DefaultNATSURL is where the admin commands look for NATS when neither
// --nats-url, KEYGATE_NATS_URL nor a config file names one: the embedded
// server of "keygate serve".
const DefaultNATSURL = "nats://127.0.0.1:4222"

// openTimeout bounds binding to the buckets once connected.
const openTimeout = 10 * time.Second

// adminFlags are the flags every keys and balance subcommand takes.
type adminFlags struct {
	natsURL string
	config  string
	json    bool
}

func addAdminFlags(fs *flag.FlagSet) *adminFlags {
	a := addConnFlags(fs)
	fs.BoolVar(&a.json, "json", false, "print JSON")
	return a
}

// addConnFlags adds the flags that say how to reach the store.
func addConnFlags(fs *flag.FlagSet) *adminFlags {
	a := &adminFlags{}
	fs.StringVar(&a.natsURL, "nats-url", "", "NATS `URL` or comma-separated seed list (default $KEYGATE_NATS_URL, else "+DefaultNATSURL+")")
	fs.StringVar(&a.config, "config", "", "YAML config `FILE`: key format, bucket names, NATS credentials")
	return a
}

// session is an open connection to the key store and the operations on
// it.
type session struct {
	cfg   config.Config
	conn  *broker.Conn
	store *store.Store
	svc   *admin.Service
	by    admin.Actor // who runs the command
}

func (a *session) close() { a.conn.Close() }

// open loads the configuration, connects to NATS and binds to the buckets.
// Configuration problems exit 2; an unreachable server exits 1 with an
// error naming the URL (never its credentials).
func (f *adminFlags) open(ctx context.Context, io IO) (*session, error) {
	cfg, err := f.load(io)
	if err != nil {
		return nil, err
	}
	shown := redactURL(cfg.NATS.URL)
	conn, err := broker.Connect(brokerOptions(cfg.NATS))
	if err != nil {
		return nil, fmt.Errorf("cannot connect to NATS at %s: %s", shown, redactURL(cause(err).Error()))
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	so := cfg.NATS.StoreOptions()
	so.HoldTTL = cfg.Pricing.HoldTTL.D() // opening sets the holds stream's age from it, as keygate serve does
	st, err := store.Open(octx, conn.JS, so)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("NATS at %s: %w", shown, err)
	}
	trail, err := audit.Open(octx, conn.JS, audit.Options{Replicas: cfg.NATS.Replicas, KeyFormat: cfg.Keys.Format()})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("NATS at %s: %w", shown, err)
	}
	svc := admin.New(admin.Options{Store: st, Keys: cfg.Keys, Record: admin.AuditTo(trail)})
	return &session{cfg: cfg, conn: conn, store: st, svc: svc, by: cliActor(io)}, nil
}

// cliActor is who runs the command: the user and the host.
func cliActor(io IO) admin.Actor {
	a := admin.Actor{Kind: admin.ActorCLI, User: io.getenv()("USER")}
	if u, err := user.Current(); err == nil {
		a.User = u.Username
	}
	a.Host, _ = os.Hostname()
	return a
}

// load reads the config file and KEYGATE_* environment and settles the
// NATS URL: --nats-url, then KEYGATE_NATS_URL, then the file, then the
// default.
func (f *adminFlags) load(io IO) (config.Config, error) {
	getenv := io.getenv()
	cfg, err := config.Load(f.config, getenv)
	if err != nil {
		return cfg, usagef("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	source := "nats.url"
	switch {
	case f.natsURL != "":
		cfg.NATS.URL, source = f.natsURL, "--nats-url"
	case getenv("KEYGATE_NATS_URL") != "":
		source = "KEYGATE_NATS_URL"
	case cfg.NATS.URL == "":
		cfg.NATS.URL = DefaultNATSURL
	}
	if err := config.CheckNATSURL(cfg.NATS.URL); err != nil {
		return cfg, usagef("%s: %v", source, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("invalid configuration: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return cfg, nil
}

func (io IO) getenv() func(string) string {
	if io.Getenv == nil {
		return func(string) string { return "" }
	}
	return io.Getenv
}

func brokerOptions(n config.NATS) broker.Options {
	return broker.Options{
		URL:       n.URL,
		CredsFile: n.CredsFile,
		NKeyFile:  n.NKeyFile,
		User:      n.User,
		Password:  n.Password,
		Token:     n.Token,
		CAFile:    n.CAFile,
		CertFile:  n.CertFile,
		KeyFile:   n.KeyFile,
		TokenDir:  n.TokenDir,
		Name:      "keygate-admin",
		Logger:    slog.New(slog.DiscardHandler),
	}
}

// userInfo matches the credentials in a URL, with or without a scheme.
var (
	userInfo     = regexp.MustCompile(`//[^\s,]*@`)
	bareUserInfo = regexp.MustCompile(`(^|[\s,])[^\s,/]*@`)
)

// redactURL hides any user, password or token in a URL or seed list.
func redactURL(s string) string {
	return bareUserInfo.ReplaceAllString(userInfo.ReplaceAllString(s, "//redacted@"), "${1}redacted@")
}

// cause drops the wrapping that only repeats "connect to nats".
func cause(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

// flagNames are the command line's names of the fields the admin
// package names as the admin API does.
var flagNames = map[string]string{
	"account_id": "--account", "account": "--account", "name": "--name", "env": "--env", "scopes": "--scopes",
	"rate_limit": "--rate-limit", "models": "--models", "token_limit": "--token-limit", "budget": "--budget",
	"expires_at": "--expires-in", "grace": "--grace", "days": "--days", "unused": "--unused",
	"balance": "AMOUNT", "amount": "AMOUNT", "currency": "--currency", "low_balance_threshold": "--low-threshold",
}

// hints end the refusals of the admin package for people at a terminal.
var hints = map[string]string{
	admin.CodeKeyNotActive:      "; use keys create for a new key",
	admin.CodeKeyAlreadyRotated: "; --force makes another successor",
}

// fail is err as the command line reports it: a refused value exits 2
// naming its flag (as names renames it, if it does), another refusal
// exits 1 with its message; other errors are left alone.
func fail(err error, names map[string]string) error {
	e, ok := admin.AsError(err)
	if !ok {
		return err
	}
	if e.Kind != admin.Invalid {
		return errors.New(e.Msg + hints[e.Code])
	}
	name := names[e.Field]
	if name == "" {
		name = flagNames[e.Field]
	}
	return usagef("%s: %s", name, e.Msg)
}

// refused reports whether err stops a command before it prints: every
// error does but ErrAudit, whose change was made (the command prints it,
// then fails with err).
func refused(err error) bool { return err != nil && !errors.Is(err, admin.ErrAudit) }

// printed is the error of a command that printed its change: the
// printing's, else the change's own (an unrecorded change).
func printed(printErr, err error) error {
	if printErr != nil {
		return printErr
	}
	return err
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// timeText writes t in UTC to the second, for people.
func timeText(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
