package leaks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/store"
)

// Match is one string GitHub found, as its report writes it.
type Match struct {
	Token  string `json:"token"`
	Type   string `json:"type"`   // the name the pattern was registered under
	URL    string `json:"url"`    // where it was found; may be empty
	Source string `json:"source"` // content, commit, issue_comment, npm...
}

// Label is GitHub's answer format for one string: its SHA-256 (hex),
// never the string itself.
type Label struct {
	TokenHash string `json:"token_hash"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// The labels.
const (
	TruePositive  = "true_positive"  // a keygate key: revoked now or before
	FalsePositive = "false_positive" // not a keygate key, or none keygate has
)

// Bounds of what a report says that is logged.
const (
	maxLoggedURL  = 512
	maxLoggedWord = 128 // type, source
)

var (
	errRevoked = errors.New("already revoked")
	errMoved   = errors.New("the key's id names a record of another hash")
)

// answer labels each distinct string of matches (and type it was
// reported as), revoking the keygate keys among them. A store error
// stops it.
func (h *Handler) answer(ctx context.Context, matches []Match) ([]Label, error) {
	out := make([]Label, 0, len(matches))
	seen := make(map[[2]string]bool, len(matches))
	labels := make(map[string]string, len(matches)) // by hash
	for _, m := range matches {
		hash := apikey.Hash(m.Token)
		if seen[[2]string{hash, m.Type}] {
			continue
		}
		seen[[2]string{hash, m.Type}] = true
		label, ok := labels[hash]
		if !ok {
			var err error
			if label, err = h.judge(ctx, m, hash); err != nil {
				return nil, err
			}
			labels[hash] = label
		}
		h.stats.label(label)
		out = append(out, Label{TokenHash: hash, TokenType: m.Type, Label: label})
	}
	return out, nil
}

// judge labels one string, revoking it if it is a keygate key. A string
// that is not a well-formed key (prefix, length, characters, checksum)
// is not looked up.
func (h *Handler) judge(ctx context.Context, m Match, hash string) (string, error) {
	if h.o.Format.Check(m.Token) != nil {
		return FalsePositive, nil
	}
	k, _, err := h.o.Store.KeyByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return FalsePositive, nil
	}
	if errors.Is(err, store.ErrInvalidRecord) {
		h.unrevoked(m, "", err)
		return TruePositive, nil
	}
	if err != nil {
		return "", err
	}
	err = h.revoke(ctx, k.ID, hash)
	switch {
	case err == nil:
		h.stats.revoked.Add(1)
		h.o.Log.Warn("revoked a key found in public", "key_id", k.ID, "account_id", k.AccountID,
			"type", clip(m.Type, maxLoggedWord), "source", clip(m.Source, maxLoggedWord), "url", h.where(m))
		return TruePositive, nil
	case errors.Is(err, errRevoked):
		return TruePositive, nil
	case errors.Is(err, store.ErrNotFound): // deleted since
		return FalsePositive, nil
	case errors.Is(err, errMoved) || errors.Is(err, store.ErrInvalidRecord):
		h.unrevoked(m, k.ID, err)
		return TruePositive, nil
	}
	return "", fmt.Errorf("revoke key %s: %w", k.ID, err)
}

// revoke revokes key id, as keys revoke does, if its record still has
// hash.
func (h *Handler) revoke(ctx context.Context, id, hash string) error {
	t := h.o.Now().UTC()
	_, err := h.o.Store.UpdateKey(ctx, id, func(k *store.Key) error {
		switch {
		case k.Hash != hash:
			return errMoved
		case k.Revoked():
			return errRevoked
		}
		k.RevokedAt = &t
		return nil
	})
	if err == nil && h.o.Trail != nil {
		h.record(ctx, id, t)
	}
	return err
}

// record appends key id's revocation to the audit trail. A failure is
// logged: the key stays revoked.
func (h *Handler) record(ctx context.Context, id string, at time.Time) {
	err := h.o.Trail.Append(ctx, audit.Record{
		Actor:  audit.Actor{Kind: audit.ActorGitHub, User: "secret scanning"},
		Action: audit.KeyRevokeLeaked,
		Target: audit.Target{Kind: audit.TargetKey, ID: id},
		At:     at,
		Before: map[string]any{"revoked_at": nil},
		After:  map[string]any{"revoked_at": at.Format(time.RFC3339Nano)},
	})
	if err != nil {
		h.o.Log.Error("the audit trail did not take a leaked key's revocation", "key_id", id, "err", err)
	}
}

// unrevoked reports a keygate key found in public whose record cannot be
// revoked here.
func (h *Handler) unrevoked(m Match, id string, err error) {
	h.stats.errors.Add(1)
	h.o.Log.Error("a key found in public could not be revoked: its record cannot be read or changed; revoke it by hand",
		"key_id", id, "key", h.o.Format.Mask(m.Token), "type", clip(m.Type, maxLoggedWord), "source", clip(m.Source, maxLoggedWord),
		"url", h.where(m), "err", err)
}

// where is m's url to log: bounded, with the key masked should it be in
// it.
func (h *Handler) where(m Match) string {
	return clip(strings.ReplaceAll(m.URL, m.Token, h.o.Format.Mask(m.Token)), maxLoggedURL)
}

// clip is s cut to n bytes, marked if cut.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
