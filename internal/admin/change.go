package admin

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/internal/audit"
)

// Actor is who makes a change, as the audit trail records it.
type Actor = audit.Actor

// Actor kinds.
const (
	ActorCLI     = audit.ActorCLI
	ActorToken   = audit.ActorAdminToken
	ActorKeygate = audit.ActorKeygate
)

// Actions of a Change: the audit trail's.
const (
	ActionKeyCreate   = audit.KeyCreate
	ActionKeyUpdate   = audit.KeyUpdate
	ActionKeyRevoke   = audit.KeyRevoke
	ActionKeyRotate   = audit.KeyRotate
	ActionBalanceSet  = audit.BalanceSet
	ActionBalanceAdd  = audit.BalanceAdd
	ActionTokenCreate = audit.TokenCreate
	ActionTokenRevoke = audit.TokenRevoke
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
