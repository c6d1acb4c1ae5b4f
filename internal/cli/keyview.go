package cli

import (
	"encoding/json"
	"time"
)

// keyFacts are what a key's view adds to its record.
type keyFacts struct {
	Status     string     `json:"status"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Unused     bool       `json:"unused"`
}

// newKeyFacts are what a freshly minted key's view adds to its record.
type newKeyFacts struct {
	keyFacts
	Secret       string     `json:"key"`
	OldID        string     `json:"old_id,omitempty"`
	OldExpiresAt *time.Time `json:"old_expires_at,omitempty"`
}

// MarshalJSON writes the record as stored (members this keygate does not
// know included) with the view's members. store.Key's own MarshalJSON
// would otherwise be promoted and write the record alone.
func (v keyView) MarshalJSON() ([]byte, error) {
	return mergeJSON(v.Key, keyFacts{Status: v.Status, LastUsedAt: v.LastUsedAt, Unused: v.Unused})
}

// MarshalJSON writes the key's view with the plaintext key.
func (v newKeyView) MarshalJSON() ([]byte, error) {
	return mergeJSON(v.Key, newKeyFacts{
		keyFacts: keyFacts{Status: v.Status, LastUsedAt: v.LastUsedAt, Unused: v.Unused},
		Secret:   v.Secret, OldID: v.OldID, OldExpiresAt: v.OldExpiresAt,
	})
}

// mergeJSON is one JSON object with the members of the objects rec and
// facts; a member of facts wins over one of the same name in rec (a
// record's unknown member named "status" cannot pass for the view's).
func mergeJSON(rec, facts any) ([]byte, error) {
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
	return json.Marshal(m)
}
