package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// KeyVersion is the newest key record format this keygate reads. A
// record names its format in "v" (absent: 1).
const KeyVersion = 2

// maxHold bounds one keygate's hold of an account, in nanos.
const maxHold = 1 << 62

// The members of each record this keygate understands, from the
// structs' JSON tags.
var (
	knownKeyFields     = jsonNames(reflect.TypeFor[Key]())
	knownAccountFields = jsonNames(reflect.TypeFor[Account]())
)

func jsonNames(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}

// readUnknown keeps in *unknown the members of the record b that known
// does not name: members added by a newer keygate, met during a rolling
// upgrade or after a rollback. Rewriting the record keeps them.
func readUnknown(b []byte, known map[string]bool, unknown *map[string]json.RawMessage) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for name, v := range all {
		if !known[name] {
			if *unknown == nil {
				*unknown = map[string]json.RawMessage{}
			}
			(*unknown)[name] = v
		}
	}
	return nil
}

// withUnknown appends the members unknown to the JSON object b.
func withUnknown(b []byte, err error, unknown map[string]json.RawMessage) ([]byte, error) {
	if err != nil || len(unknown) == 0 {
		return b, err
	}
	extra, err := json.Marshal(unknown)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte("}"))
	return append(append(b, ','), extra[1:]...), nil
}

// Unsupported names what makes the key record one this keygate must not
// enforce, as it cannot read all its restrictions: members it does not
// know, or a newer format. Empty for a record it reads whole.
func (k *Key) Unsupported() []string {
	var out []string
	for name := range k.unknown {
		out = append(out, name)
	}
	slices.Sort(out)
	if k.V > KeyVersion {
		out = append(out, fmt.Sprintf("v=%d", k.V))
	}
	return out
}

// Unknown is the record's members this keygate does not know, as read;
// the caller must not change it.
func (k *Key) Unknown() map[string]json.RawMessage { return k.unknown }

// MarshalJSON writes the record with the members it did not know, as
// read.
func (k *Key) MarshalJSON() ([]byte, error) {
	type plain Key
	b, err := json.Marshal((*plain)(k))
	return withUnknown(b, err, k.unknown)
}

// MarshalJSON writes the record with the members it did not know, as
// read.
func (a *Account) MarshalJSON() ([]byte, error) {
	type plain Account
	b, err := json.Marshal((*plain)(a))
	return withUnknown(b, err, a.unknown)
}
