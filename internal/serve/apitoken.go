package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/config"
)

// maxTokenFile bounds what is read of api_token_file: a token and some
// whitespace.
const maxTokenFile = 4096

// ensureAPIToken makes sure the admin token in api_token_file has a
// record: stored with api_token_scopes if missing, left alone if present.
// A revoked record stays revoked, and a stored record keeps its scopes;
// both are logged by token id. The token itself is never logged nor
// quoted in an error.
func (inst *Instance) ensureAPIToken(ctx context.Context, cfg config.Config, svc *admin.Service) error {
	secret, err := readTokenFile(cfg.APITokenFile)
	if err != nil {
		return err
	}
	v, created, err := svc.EnsureToken(ctx, tokenFileActor(), "api_token_file", secret, cfg.APITokenScopes)
	if e, ok := admin.AsError(err); ok {
		return fmt.Errorf("api_token_file: %s: %s", cfg.APITokenFile, e.Msg)
	}
	if errors.Is(err, admin.ErrAudit) {
		inst.log.Error("admin token from api_token_file stored without its audit record", "token_id", v.ID, "err", err)
	} else if err != nil {
		return fmt.Errorf("api_token_file: %w", err)
	}
	switch {
	case created:
		inst.log.Info("admin token from api_token_file stored", "token_id", v.ID, "scopes", v.Scopes)
	case v.Status == admin.StatusRevoked:
		inst.log.Warn("the admin token in api_token_file is revoked: the admin API refuses it; put a new one (keygate tokens new) in the file",
			"token_id", v.ID)
	case !sameScopes(v.Scopes, cfg.APITokenScopes):
		inst.log.Warn("the admin token in api_token_file keeps its stored scopes, not api_token_scopes; to change them, revoke it and put a new one in the file",
			"token_id", v.ID, "scopes", v.Scopes, "api_token_scopes", cfg.APITokenScopes)
	}
	return nil
}

// readTokenFile returns the token in file, whitespace trimmed.
func readTokenFile(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("api_token_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("api_token_file: %s: %w", file, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("api_token_file: %s: larger than %d bytes, not an admin token", file, maxTokenFile)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("api_token_file: %s: is empty; put an admin token in it (keygate tokens new)", file)
	}
	return secret, nil
}

// tokenFileActor is keygate serve storing api_token_file's token, on
// this host (a pod's name).
func tokenFileActor() admin.Actor {
	host, _ := os.Hostname()
	return admin.Actor{Kind: admin.ActorKeygate, User: "api_token_file", Host: host}
}

// sameScopes reports whether a and b hold the same scopes, in any order.
func sameScopes(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
