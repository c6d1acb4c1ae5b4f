// Package audit keeps keygate's audit trail: every change made through the
// admin API or the command line is one JSON record, appended to a
// JetStream stream that refuses deletes and purges, and no record holds a
// secret, a hash or a token.
package audit

import (
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/internal/apikey"
)

// Record is one change.
type Record struct {
	ID     string         `json:"id"` // unique; the stream drops a second record with the same id
	At     time.Time      `json:"at"` // RFC 3339, UTC
	Actor  Actor          `json:"actor"`
	Action string         `json:"action"`
	Target Target         `json:"target"`
	Before map[string]any `json:"before,omitempty"` // the changed fields as they were
	After  map[string]any `json:"after,omitempty"`  // the changed fields as they are
}

// Actor is who made a change.
type Actor struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"` // the admin token's id
	User string `json:"user,omitempty"`
	Host string `json:"host,omitempty"`
}

// Kinds of actor.
const (
	ActorAdminToken = "admin_token" // a call to the admin API, by token id
	ActorCLI        = "cli"         // a keygate command, by user and host
	ActorGitHub     = "github"      // a GitHub secret-scanning report
	ActorKeygate    = "keygate"     // keygate itself
)

// Target is what a change changed.
type Target struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// Kinds of target.
const (
	TargetKey     = "key"
	TargetAccount = "account"
	TargetToken   = "token" // an admin token
)

// Actions.
const (
	KeyCreate       = "key.create"
	KeyUpdate       = "key.update"
	KeyRevoke       = "key.revoke"
	KeyRotate       = "key.rotate"
	KeyRevokeLeaked = "key.revoke_leaked"
	BalanceSet      = "balance.set"
	BalanceAdd      = "balance.add"
	TokenCreate     = "token.create"
	TokenRevoke     = "token.revoke"
)

// ErrInvalid is wrapped by every error about a record that Append refuses.
var ErrInvalid = errors.New("invalid audit record")

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	actionPattern = regexp.MustCompile(`^[a-z][a-z_]{0,31}\.[a-z][a-z_]{0,31}$`)
	actorKinds    = map[string]bool{ActorAdminToken: true, ActorCLI: true, ActorGitHub: true, ActorKeygate: true}
	targetKinds   = map[string]bool{TargetKey: true, TargetAccount: true, TargetToken: true}
)

// maxNameLen bounds an actor's user and host.
const maxNameLen = 256

// NewID returns a new record id: "aud_" and 26 random characters.
func NewID() string { return "aud_" + rand.Text() }

// validate checks what Append stores besides Before and After: every
// field the stream's subject or a reader's table shows. Its errors never
// quote a value, which could be a secret.
func (r *Record) validate(secret func(string) bool) error {
	if err := checkID(r.ID, secret); err != nil {
		return fmt.Errorf("%w: id %v", ErrInvalid, err)
	}
	if !actionPattern.MatchString(r.Action) {
		return fmt.Errorf("%w: action must be <noun>.<verb> in [a-z_], like key.create", ErrInvalid)
	}
	if !targetKinds[r.Target.Kind] {
		return fmt.Errorf("%w: target kind must be key, account or token", ErrInvalid)
	}
	if err := checkID(r.Target.ID, secret); err != nil {
		return fmt.Errorf("%w: target id %v", ErrInvalid, err)
	}
	if !actorKinds[r.Actor.Kind] {
		return fmt.Errorf("%w: actor kind must be admin_token, cli, github or keygate", ErrInvalid)
	}
	if r.Actor.ID != "" {
		if err := checkID(r.Actor.ID, secret); err != nil {
			return fmt.Errorf("%w: actor id %v", ErrInvalid, err)
		}
	}
	for _, f := range []struct{ name, v string }{{"actor user", r.Actor.User}, {"actor host", r.Actor.Host}} {
		if !printable(f.v) || secret(f.v) {
			return fmt.Errorf("%w: %s must be printable text of at most %d bytes, and no secret", ErrInvalid, f.name, maxNameLen)
		}
	}
	return nil
}

// CheckID reports why id cannot name a target: it must be one subject
// token (1 to 64 of [A-Za-z0-9_-], starting with a letter or digit) and
// not look like a key of format f (zero: the default format) or a hash.
// The error does not quote id.
func CheckID(id string, f apikey.Format) error {
	if len(f.Prefixes) == 0 {
		f = apikey.DefaultFormat()
	}
	return checkID(id, secretValue(f))
}

// checkID accepts what can name a record, a key, an account or a token
// (1 to 64 of [A-Za-z0-9_-], starting with a letter or digit: one subject
// token), unless it looks like a secret.
func checkID(id string, secret func(string) bool) error {
	if !idPattern.MatchString(id) {
		return errors.New("must be 1-64 of [A-Za-z0-9_-], starting with a letter or digit")
	}
	if secret(id) {
		return errors.New("looks like a key or a hash, not an id")
	}
	return nil
}

func printable(s string) bool {
	if len(s) > maxNameLen || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}
