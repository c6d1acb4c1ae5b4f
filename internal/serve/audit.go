package serve

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
)

// openTrail opens the audit trail if something here changes records on
// request: the admin API or GitHub's secret scanning endpoint.
func (inst *Instance) openTrail(ctx context.Context, cfg config.Config) error {
	if cfg.APIAddr == "" && !cfg.Leaks.GitHub.Enabled {
		return nil
	}
	t, err := audit.Open(ctx, inst.conn.JS, audit.Options{Replicas: cfg.NATS.Replicas, KeyFormat: cfg.Keys.Format()})
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	inst.trail = t
	return nil
}
