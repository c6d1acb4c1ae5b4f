package admin

import (
	"encoding/json"
	"time"

	"github.com/keygate/keygate/internal/store"
)

// UnusedAfter is how long without use marks a key unused.
const UnusedAfter = 30 * 24 * time.Hour

// KeyView is a key as the command line and the API show it: its record
// as stored (members this keygate does not know included) and what is
// known of it besides.
type KeyView struct {
	*store.Key
	Status     string     // "active", "revoked" or "expired"
	LastUsedAt *time.Time // to the minute; nil if never used
	Unused     bool       // not used for UnusedAfter, or never
}

// NewKey is a key just minted, the only view with the key itself.
type NewKey struct {
	KeyView
	Secret string
	// OldID and OldExpiresAt are, for a rotation, the key replaced and
	// its new expiry.
	OldID        string
	OldExpiresAt *time.Time
}

// ViewKey is k as shown, with its use u (nil: never used) at now. Every
// view of a key is made here, so that they agree.
func ViewKey(k *store.Key, u *store.Usage, now time.Time) KeyView {
	v := KeyView{Key: k, Status: k.Status(now)}
	if u != nil {
		v.LastUsedAt = u.LastUsedAt
	}
	v.Unused = v.LastUsedAt == nil || now.Sub(*v.LastUsedAt) >= UnusedAfter
	return v
}

// keyFacts are what a key's view adds to its record.
type keyFacts struct {
	Status     string     `json:"status"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Unused     bool       `json:"unused"`
}

// newKeyFacts are what a freshly minted key's view adds to its record.
type newKeyFacts struct {
	keyFacts
	Secret       *string    `json:"key"`
	OldID        string     `json:"old_id,omitempty"`
	OldExpiresAt *time.Time `json:"old_expires_at,omitempty"`
}

func (v KeyView) facts() keyFacts {
	return keyFacts{Status: v.Status, LastUsedAt: v.LastUsedAt, Unused: v.Unused}
}

// MarshalJSON writes the record as stored with the view's members.
// store.Key's own MarshalJSON would otherwise be promoted and write the
// record alone.
func (v KeyView) MarshalJSON() ([]byte, error) { return mergeJSON(v.Key, v.facts()) }

// Public is the view as JSON without the key's hash: what the admin API
// answers and a Recorder gets.
func (v KeyView) Public() (json.RawMessage, error) {
	return publicJSON(v.Key, struct {
		*plainKey
		noHash
		keyFacts
	}{(*plainKey)(v.Key), noHash{}, v.facts()})
}

// MarshalJSON writes the key's view with the key itself as "key".
func (n NewKey) MarshalJSON() ([]byte, error) { return mergeJSON(n.Key, n.newFacts(&n.Secret)) }

// Public is the view as JSON without the key's hash, with the key itself
// as "key" when shown is true, else "key": null.
func (n NewKey) Public(shown bool) (json.RawMessage, error) {
	var secret *string
	if shown {
		secret = &n.Secret
	}
	return publicJSON(n.Key, struct {
		*plainKey
		noHash
		newKeyFacts
	}{(*plainKey)(n.Key), noHash{}, n.newFacts(secret)})
}

// plainKey is a key record without its own MarshalJSON.
type plainKey store.Key

// noHash, embedded beside a plainKey, keeps its hash out of the JSON:
// encoding/json drops both of two tagged fields of one name at one depth.
type noHash struct {
	Hash *struct{} `json:"hash,omitempty"`
}

// viewMembers are the members a view writes beside the record's.
var viewMembers = map[string]bool{"hash": true, "status": true, "last_used_at": true, "unused": true, "key": true,
	"old_id": true, "old_expires_at": true}

// publicJSON writes view, then the members of k's record this keygate
// does not know that the view does not write itself: one pass, where
// mergeJSON reads and writes the JSON twice.
func publicJSON(k *store.Key, view any) (json.RawMessage, error) {
	b, err := json.Marshal(view)
	if err != nil || len(k.Unknown()) == 0 {
		return b, err
	}
	extra := map[string]json.RawMessage{}
	for name, v := range k.Unknown() {
		if !viewMembers[name] {
			extra[name] = v
		}
	}
	if len(extra) == 0 {
		return b, nil
	}
	eb, err := json.Marshal(extra)
	if err != nil {
		return nil, err
	}
	return append(append(b[:len(b)-1], ','), eb[1:]...), nil
}

func (n NewKey) newFacts(secret *string) newKeyFacts {
	return newKeyFacts{keyFacts: n.facts(), Secret: secret, OldID: n.OldID, OldExpiresAt: n.OldExpiresAt}
}

// mergeJSON is one JSON object with the members of the objects rec and
// facts, without the members named in drop; a member of facts wins over
// one of the same name in rec (a record's unknown member named "status"
// cannot pass for the view's).
func mergeJSON(rec, facts any, drop ...string) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if b, err = json.Marshal(facts); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, name := range drop {
		delete(m, name)
	}
	return json.Marshal(m)
}
