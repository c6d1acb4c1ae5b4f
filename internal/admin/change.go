package admin

import (
	"context"
	"fmt"
)

// Actor is who makes a change.
type Actor struct {
	// Kind is "cli", "admin_token" or "keygate".
	Kind string `json:"kind"`
	// ID is the admin token's id; empty for the command line.
	ID string `json:"id,omitempty"`
	// User is the operating-system user who ran the command, or the
	// admin token's name.
	User string `json:"user,omitempty"`
	// Host is the command line's host name, or the API client's address.
	Host string `json:"host,omitempty"`
}

// Actor kinds.
const (
	ActorCLI     = "cli"
	ActorToken   = "admin_token"
	ActorKeygate = "keygate" // keygate serve itself
)

// Actions of a Change.
const (
	ActionKeyCreate   = "key.create"
	ActionKeyUpdate   = "key.update"
	ActionKeyRevoke   = "key.revoke"
	ActionKeyRotate   = "key.rotate"
	ActionBalanceSet  = "balance.set"
	ActionBalanceAdd  = "balance.add"
	ActionTokenCreate = "token.create"
	ActionTokenRevoke = "token.revoke"
)

// Change is one change made through this package, as a Recorder gets it.
// Before and After are the target's views as JSON objects, never with a
// key, a token or a hash of either; Before is nil for a creation.
type Change struct {
	Actor      Actor  `json:"actor"`
	Action     string `json:"action"`
	TargetKind string `json:"target_kind"` // "key", "account" or "token"
	TargetID   string `json:"target_id"`
	Before     any    `json:"before,omitempty"`
	After      any    `json:"after,omitempty"`
}

// Recorder is told of every change once it is made. Its error does not
// undo the change: the operation returns its result and an error that
// wraps ErrAudit.
type Recorder func(ctx context.Context, c Change) error

// record tells the Recorder of a change.
func (s *Service) record(ctx context.Context, c Change) error {
	if s.recorder == nil {
		return nil
	}
	if err := s.recorder(ctx, c); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return nil
}
