package serve

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/leaks"
	"github.com/keygate/keygate/internal/store"
)

// startLeaks makes GitHub's secret scanning endpoint if the configuration
// turns it on. Keys from a file are read now, so that a bad file stops
// keygate; keys from a URL when the first report comes.
func (inst *Instance) startLeaks(ctx context.Context, cfg config.Config, st *store.Store, reg prometheus.Registerer) error {
	g := cfg.Leaks.GitHub
	if !g.Enabled {
		return nil
	}
	keys := leaks.NewKeys(leaks.Source{URL: g.KeysURL, File: g.KeysFile, Token: g.Token}, nil, inst.log)
	if g.KeysFile != "" {
		if err := keys.Refresh(ctx); err != nil {
			return fmt.Errorf("leaks.github.keys_file: %w", err)
		}
	}
	inst.leaks = leaks.New(leaks.Options{Store: st, Format: cfg.Keys.Format(), Keys: keys, Log: inst.log, Trail: inst.trail})
	inst.leaks.Register(reg)
	inst.log.Info("GitHub secret scanning endpoint on the admin port", "path", leaks.Path,
		"pattern", leaks.Pattern(cfg.Keys.Format()))
	return nil
}
