package admin

import (
	"context"

	"github.com/keygate/keygate/internal/audit"
)

// AuditTo is a Recorder that appends each change to trail as one record:
// who, what, and the fields that changed, as they were and as they are.
func AuditTo(trail *audit.Log) Recorder {
	return func(ctx context.Context, c Change) error {
		before, after := audit.Diff(c.Before, c.After)
		return trail.Append(ctx, audit.Record{
			Actor:  c.Actor,
			Action: c.Action,
			Target: audit.Target{Kind: c.TargetKind, ID: c.TargetID},
			Before: before,
			After:  after,
		})
	}
}
